"""A fast input path: augment uint8 faces at their source resolution in batches, resize last, normalise in the collator.

The reference pipelines of :mod:`modeling.training.transforms` resize a 48 px FER+ face to 224 px first and then
augment and normalise 224 px float images one at a time. Measured in ``bench/input_pipeline.py``, most of
that time goes to per-sample work on big images. Here:

1. :class:`FaceBatchTransform` (for ``Dataset.with_transform``; the DataLoader fetches a whole batch through
   ``Dataset.__getitems__``, so it sees 64 faces at once) decodes the faces to uint8 ``[N, 3, h, w]`` and
   applies flip, brightness jitter and the translate/scale affine to the batch at the source resolution
   (48 x 48 for FER+, 21x fewer pixels than 224 x 224), then resizes each face to ``image_size`` in uint8
   with the same bicubic resize as the reference. It also draws the random-erasing box, on the final grid.
2. :class:`PixelCollator` stacks the uint8 faces, normalises the batch in one pass and erases the boxes
   (value 0 after normalisation, as ``v2.RandomErasing(value=0)`` after ``Normalize``).

The augmentation distribution is the documented recipe (:class:`~modeling.training.transforms.RegularAugmentation`;
MAE pretraining's RandomResizedCrop (0.2, 1) + flip): same probabilities, the same brightness factors,
translations and scales *relative to the image size*, the same erasing area and aspect-ratio ranges.
What differs: the affine resamples on the source grid (bilinear, as the reference) before the bicubic
upscale, and translations are continuous fractions of the image instead of whole 224-grid pixels.
MAE pretraining is unchanged in distribution: RandomResizedCrop already crops at the source resolution.
``tests/test_fast_input.py`` compares the statistics with the reference transforms.
Augmentations without a fast path (``mae``'s RandAugment) keep the reference transforms.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from .finetuning import collate_classification
from .pixels import PixelNormalizer, erase_boxes
from .transforms import RegularAugmentation, _with_knobs

FAST_AUGMENTATIONS: tuple[str, ...] = ("none", "regular", "mae_pretrain")
NO_BOX: tuple[int, int, int, int] = (0, 0, 0, 0)
_BICUBIC = InterpolationMode.BICUBIC


def decode_face(image: Any) -> torch.Tensor:
    """One face -> uint8 ``[C, h, w]``: C = 1 for grayscale sources (FER+), else 3 (RGB).

    Accepts undecoded ``{"bytes", "path"}`` dicts (``datasets.Image(decode=False)``; decoded with OpenCV, about
    ten times faster than PIL on 48 px PNGs), raw bytes, PIL images and image tensors. Grayscale stays one
    channel through augmentation and resizing (a third of the work); the collator broadcasts it to RGB.
    """
    if isinstance(image, torch.Tensor):
        return image if image.dim() == 3 else image.unsqueeze(0)
    if isinstance(image, (dict, bytes)):
        data = image if isinstance(image, bytes) else image.get("bytes")
        path = None if isinstance(image, bytes) else image.get("path")
        if data is None:
            if path is None:
                raise ValueError("an image entry has neither bytes nor a path")
            data = Path(path).read_bytes()
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None or array.dtype != np.uint8:
            try:  # 16-bit, palette or anything else OpenCV does not give as 8-bit: PIL's RGB conversion
                image = Image.open(io.BytesIO(data))
                image.load()
            except Exception as e:
                raise ValueError(f"{path or 'image bytes'}: cannot decode the image ({e})") from e
        elif array.ndim == 2:
            return torch.from_numpy(array).unsqueeze(0)
        else:
            code = cv2.COLOR_BGRA2RGB if array.shape[2] == 4 else cv2.COLOR_BGR2RGB
            return torch.from_numpy(cv2.cvtColor(array, code)).permute(2, 0, 1)
    if image.mode == "L":
        return torch.from_numpy(np.array(image)).unsqueeze(0)
    return torch.from_numpy(np.array(image if image.mode == "RGB" else image.convert("RGB"))).permute(2, 0, 1)


def undecoded(dataset: datasets.Dataset, column: str = "image") -> datasets.Dataset:
    """``dataset`` with ``column`` left as bytes, for :func:`decode_face` (a metadata-only cast)."""
    return dataset.cast_column(column, datasets.Image(decode=False))


def size_groups(faces: Sequence[torch.Tensor]) -> dict[tuple[int, int], list[int]]:
    """Indices of ``faces`` grouped by ``(C, h, w)``, so that equal-size faces are augmented as one batch."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, face in enumerate(faces):
        groups.setdefault(tuple(face.shape), []).append(i)
    return groups


def affine_matrices(angle: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """``[N, 2, 3]`` inverse maps for ``F.affine_grid``: rotate by ``angle`` (degrees) and scale about the centre,
    then shift by ``(tx, ty)`` fractions of the width/height (RandomAffine's parametrisation)."""
    theta = torch.deg2rad(angle)
    cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
    # Output point p maps to input A^-1 (p - t); grid coordinates span [-1, 1], so a shift of a fraction f is 2f.
    sx, sy = 2 * tx, 2 * ty
    row0 = torch.stack([cos, sin, -(cos * sx + sin * sy)], dim=-1)
    row1 = torch.stack([-sin, cos, -(-sin * sx + cos * sy)], dim=-1)
    return torch.stack([row0, row1], dim=1)


def regular_augment(faces: torch.Tensor, cfg: RegularAugmentation) -> torch.Tensor:
    """The ``regular`` recipe on a uint8 batch ``[N, 3, h, w]`` at any resolution -> uint8 ``[N, 3, h, w]``.

    Flip (p ``hflip``), then with p ``jitter_p`` ColorJitter, then with p ``affine_p`` a rotate/translate/scale
    affine (bilinear, zero fill), each decided per face as ``RandomApply`` does.
    """
    n = faces.shape[0]
    flip = torch.rand(n) < cfg.hflip
    faces = torch.where(flip.view(n, 1, 1, 1), faces.flip(-1), faces)
    jitter = torch.rand(n) < cfg.jitter_p
    affine = torch.rand(n) < cfg.affine_p
    if not (jitter.any() or affine.any()):
        return faces
    if jitter.any() and (cfg.contrast or cfg.saturation or cfg.hue):
        # Order-randomised multi-property jitter: torchvision's own, per face, still at the source resolution.
        color = v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)
        faces = faces.expand(n, 3, *faces.shape[-2:]).clone()
        for i in torch.nonzero(jitter).flatten().tolist():
            faces[i] = color(faces[i])
    x = faces.float()
    if jitter.any() and not (cfg.contrast or cfg.saturation or cfg.hue) and cfg.brightness:
        # adjust_brightness blends with black: factor ~ U(max(0, 1 - b), 1 + b), clamp, truncate to uint8.
        low, high = max(0.0, 1.0 - cfg.brightness), 1.0 + cfg.brightness
        factor = torch.where(jitter, torch.empty(n).uniform_(low, high), torch.ones(n))
        x = (x * factor.view(n, 1, 1, 1)).clamp_(0, 255).floor_()
    if affine.any():
        idx = torch.nonzero(affine).flatten()
        k = len(idx)
        angle = torch.empty(k).uniform_(-cfg.degrees, cfg.degrees)
        scale = torch.empty(k).uniform_(*cfg.scale)
        tx = torch.empty(k).uniform_(-cfg.translate[0], cfg.translate[0])
        ty = torch.empty(k).uniform_(-cfg.translate[1], cfg.translate[1])
        grid = F.affine_grid(affine_matrices(angle, scale, tx, ty), [k, *x.shape[1:]], align_corners=False)
        x[idx] = F.grid_sample(x[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=False).round_()
    return x.clamp_(0, 255).to(torch.uint8)


def random_crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random-resized crop: area fraction ~ U(scale), log aspect ratio ~ U(log ratio).

    The sampling scheme of Szegedy et al. (2015) as torchvision's ``RandomResizedCrop`` implements it: ten
    tries, then a centre crop with the aspect ratio clamped to ``ratio``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*scale))
        aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio)))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(torch.randint(0, height - h + 1, (1,))), int(torch.randint(0, width - w + 1, (1,))), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def erasing_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float] = (0.3, 3.3)
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random-erasing box (Zhong et al. 2020; torchvision's scheme), or :data:`NO_BOX`
    when ten tries find none that fits."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*scale))
        aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio)))
        h, w = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if h < height and w < width:
            return int(torch.randint(0, height - h + 1, (1,))), int(torch.randint(0, width - w + 1, (1,))), h, w
    return NO_BOX


class FaceBatchTransform:
    """A batch transform for ``Dataset.with_transform``: ``{"image": [...], label_column: [...]}`` ->
    ``{"pixel_values": [uint8 [3, S, S]], "labels": [...], "erase": [(top, left, h, w)]}``.

    ``augmentation``: ``none`` (eval: resize only), ``regular`` (knobs as ``RegularAugmentation``) or
    ``mae_pretrain`` (RandomResizedCrop ``crop_scale`` + flip). ``label_column=None`` emits no labels (MAE);
    ``flip=True`` mirrors every face (test-time augmentation). Pair it with :class:`PixelCollator`.
    """

    def __init__(
        self,
        image_size: int,
        augmentation: str = "none",
        label_column: str | None = "label",
        flip: bool = False,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        **knobs: Any,
    ):
        if augmentation not in FAST_AUGMENTATIONS:
            raise ValueError(f"No fast path for augmentation {augmentation!r}; fast ones: {FAST_AUGMENTATIONS}")
        if knobs and augmentation != "regular":
            raise ValueError(f"augmentation {augmentation!r} takes no knobs, got {sorted(knobs)}")
        self.image_size = image_size
        self.augmentation = augmentation
        self.label_column = label_column
        self.flip = flip
        self.crop_scale = crop_scale
        self.cfg = _with_knobs(RegularAugmentation(), knobs) if augmentation == "regular" else None

    def with_options(self, label_column: str | None = "label", flip: bool = False) -> FaceBatchTransform:
        """The same transform with another label column and/or mirroring."""
        other = object.__new__(FaceBatchTransform)
        other.__dict__.update(self.__dict__, label_column=label_column, flip=flip)
        return other

    def _resize(self, face: torch.Tensor) -> torch.Tensor:
        size = [self.image_size, self.image_size]
        return face if list(face.shape[-2:]) == size else TF.resize(face, size, interpolation=_BICUBIC)

    def faces(self, images: Sequence[Any]) -> list[torch.Tensor]:
        """uint8 ``[3, image_size, image_size]`` faces, augmented as configured."""
        faces = [decode_face(image) for image in images]
        if self.augmentation == "mae_pretrain":
            out = []
            size = [self.image_size, self.image_size]
            for face in faces:
                top, left, h, w = random_crop_box(*face.shape[-2:], self.crop_scale, (3 / 4, 4 / 3))
                crop = face[:, top : top + h, left : left + w]
                crop = crop.flip(-1) if float(torch.rand(1)) < 0.5 else crop
                out.append(TF.resize(crop, size, interpolation=_BICUBIC))
            faces = out
        else:
            out: list[torch.Tensor] = [faces[0]] * len(faces)
            for indices in size_groups(faces).values():  # one batch per face size (FER+: a single one)
                batch = torch.stack([faces[i] for i in indices])
                if self.cfg is not None:
                    batch = regular_augment(batch, self.cfg)
                for i, face in zip(indices, self._resize(batch)):
                    out[i] = face
            faces = out
        return [face.flip(-1) for face in faces] if self.flip else faces

    def erase_boxes(self, n: int) -> list[tuple[int, int, int, int]]:
        """One box per face (:data:`NO_BOX` for none), drawn with probability ``erasing_p``."""
        if self.cfg is None or self.cfg.erasing_p <= 0:
            return [NO_BOX] * n
        size, cfg = self.image_size, self.cfg
        return [erasing_box(size, size, cfg.erasing_scale) if float(torch.rand(1)) < cfg.erasing_p else NO_BOX
                for _ in range(n)]  # fmt: skip

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        images = batch["image"]
        out: dict[str, list] = {"pixel_values": self.faces(images)}
        if self.label_column is not None:
            out["labels"] = batch[self.label_column]
        if self.cfg is not None:
            out["erase"] = self.erase_boxes(len(images))
        return out


class PixelCollator:
    """Collates :class:`FaceBatchTransform` examples: uint8 faces (1 or 3 channels) -> normalised float ``[N, 3, S, S]``,
    erasing boxes set to 0 (after normalisation, as ``v2.RandomErasing(value=0)``), labels as
    ``collate_classification``. Float ``pixel_values`` (the reference transforms) pass through unchanged.

    ``on_device=True`` leaves the normalisation to the consumer: the batch keeps uint8 ``pixel_values`` (grayscale
    batches one channel) and the boxes as ``pixel_erase`` ``[N, 4]``, and
    :class:`~modeling.training.pixels.NormalizeOnDevice` trainers finish it on the accelerator with :attr:`normalizer`.
    A loader worker then writes 4x (grayscale: 12x) fewer bytes per batch and the host-to-device copy shrinks alike;
    the normalisation costs the GPU next to nothing. The idea is timm's ``PrefetchLoader`` (R. Wightman), which
    normalises and erases on the GPU.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], on_device: bool = False):
        self.normalizer = PixelNormalizer(mean, std)
        self.on_device = on_device

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if len({e["pixel_values"].shape[0] for e in examples}) > 1:  # gray and colour faces in one batch
            examples = [{**e, "pixel_values": e["pixel_values"].expand(3, -1, -1)} for e in examples]
        if "labels" in examples[0]:
            batch = collate_classification(examples)
        else:
            batch = {"pixel_values": torch.stack([e["pixel_values"] for e in examples])}
        pixels = batch["pixel_values"]
        erase = None
        if any("erase" in e for e in examples):
            erase = torch.tensor([e.get("erase", NO_BOX) for e in examples], dtype=torch.int64)
        if pixels.dtype == torch.uint8:
            if self.on_device:
                if erase is not None:
                    batch["pixel_erase"] = erase
                return batch
            out = _new_batch((pixels.shape[0], 3, *pixels.shape[-2:]))
            batch["pixel_values"] = self.normalizer(pixels, erase, out=out)
        elif erase is not None:  # already float: only the boxes
            erase_boxes(pixels, erase)
        return batch


def _new_batch(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty float tensor; in a DataLoader worker, in shared memory as ``default_collate`` allocates it, so that
    sending the batch to the main process does not copy it once more."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    storage = torch.empty(0)._typed_storage()._new_shared(math.prod(shape), device="cpu")
    return torch.empty(0).new(storage).view(shape)


def fast_transforms(
    augmentation: str, image_size: int, label_column: str | None = "label", **knobs: Any
) -> tuple[FaceBatchTransform, FaceBatchTransform] | None:
    """``(train, eval)`` batch transforms for ``augmentation``, or None where it has no fast path."""
    if augmentation not in FAST_AUGMENTATIONS:
        return None
    train = FaceBatchTransform(image_size, augmentation, label_column, **knobs)
    return train, FaceBatchTransform(image_size, "none", label_column)
