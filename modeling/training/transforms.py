"""Image transforms (torchvision v2) for fine-tuning and MAE pretraining, and batch-level mixup/cutmix.

Every pipeline takes a PIL image (or an image tensor) of any mode, converts it to RGB first so that
grayscale datasets (FER+, 48x48 L) come out as 3 channels, and returns a normalised float tensor
``[3, H, W]``. Augmentation knobs live in dataclasses; ``build_train_transform(..., **knobs)`` overrides
any field by name.

- ``none``: resize to ``image_size`` + normalise.
- ``regular``: the seed paper's augmentation (NOTES #18): horizontal flip, then with p=0.5 ColorJitter(0.25)
  (brightness 0.25, as the call ``ColorJitter(0.25)`` means) and with p=0.5 a translate/scale affine,
  then random erasing. The affine ranges and erasing settings are not given there; the defaults below
  (translate 0.1, scale 0.9-1.1, torchvision's erasing defaults) are ours.
- ``mae``: MAE fine-tuning (NOTES #17, timm ``create_transform``): RandomResizedCrop + flip +
  RandAugment(2 ops, magnitude 9; torchvision has no magnitude noise, so "mstd0.5" is approximated by
  the fixed magnitude) + random erasing p=0.25 with per-pixel noise, after normalisation. Mixup/cutmix
  and label smoothing are batch-level: :class:`MixupCutmix`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2

from .losses import smooth_one_hot

AUGMENTATIONS: tuple[str, ...] = ("none", "regular", "mae")
_BICUBIC = InterpolationMode.BICUBIC
# Affine warps (RandomAffine, RandAugment) on image tensors support nearest and bilinear only.
_BILINEAR = InterpolationMode.BILINEAR


@dataclass
class RegularAugmentation:
    """Knobs of the ``regular`` augmentation (seed paper, NOTES #18)."""

    hflip: float = 0.5
    jitter_p: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    affine_p: float = 0.5
    degrees: float = 0.0
    translate: tuple[float, float] = (0.1, 0.1)
    scale: tuple[float, float] = (0.9, 1.1)
    erasing_p: float = 0.5
    erasing_scale: tuple[float, float] = (0.02, 0.33)


@dataclass
class MaeAugmentation:
    """Knobs of the ``mae`` augmentation (MAE fine-tuning, NOTES #17)."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    erasing_p: float = 0.25
    erasing_scale: tuple[float, float] = (0.02, 1 / 3)


def _with_knobs(defaults: Any, knobs: dict[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(defaults)}
    unknown = sorted(set(knobs) - fields)
    if unknown:
        raise ValueError(f"Unknown knobs {unknown} for {type(defaults).__name__}; known: {sorted(fields)}")
    return dataclasses.replace(defaults, **knobs)


def _to_float(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]


def build_eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Deterministic: RGB, bicubic resize to ``image_size`` x ``image_size``, normalise."""
    return v2.Compose(
        [v2.RGB(), v2.ToImage(), v2.Resize((image_size, image_size), interpolation=_BICUBIC), *_to_float(mean, std)]
    )


def build_train_transform(
    augmentation: str, image_size: int, mean: Sequence[float], std: Sequence[float], **knobs: Any
) -> v2.Compose:
    """Training pipeline for ``augmentation`` in :data:`AUGMENTATIONS`; ``knobs`` override its dataclass fields."""
    if augmentation == "none":
        if knobs:
            raise ValueError(f"augmentation 'none' takes no knobs, got {sorted(knobs)}")
        return build_eval_transform(image_size, mean, std)
    if augmentation == "regular":
        cfg = _with_knobs(RegularAugmentation(), knobs)
        jitter = v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)
        affine = v2.RandomAffine(cfg.degrees, translate=cfg.translate, scale=cfg.scale, interpolation=_BILINEAR)
        return v2.Compose(
            [
                v2.RGB(),
                v2.ToImage(),
                v2.Resize((image_size, image_size), interpolation=_BICUBIC),
                v2.RandomHorizontalFlip(cfg.hflip),
                v2.RandomApply([jitter], p=cfg.jitter_p),
                v2.RandomApply([affine], p=cfg.affine_p),
                *_to_float(mean, std),
                v2.RandomErasing(p=cfg.erasing_p, scale=cfg.erasing_scale, value=0.0),
            ]
        )
    if augmentation == "mae":
        cfg = _with_knobs(MaeAugmentation(), knobs)
        return v2.Compose(
            [
                v2.RGB(),
                v2.ToImage(),
                v2.RandomResizedCrop(image_size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, interpolation=_BICUBIC),
                v2.RandomHorizontalFlip(cfg.hflip),
                v2.RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude, interpolation=_BILINEAR),
                *_to_float(mean, std),
                # timm "pixel" mode: erase with per-pixel normal noise, in normalised space.
                v2.RandomErasing(p=cfg.erasing_p, scale=cfg.erasing_scale, value="random"),
            ]
        )
    raise ValueError(f"Unknown augmentation {augmentation!r}; choose one of {list(AUGMENTATIONS)}")


def build_mae_pretrain_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], scale: tuple[float, float] = (0.2, 1.0)
) -> v2.Compose:
    """MAE pretraining (NOTES #16): RandomResizedCrop(scale 0.2-1, bicubic) + horizontal flip, normalise."""
    return v2.Compose(
        [
            v2.RGB(),
            v2.ToImage(),
            v2.RandomResizedCrop(image_size, scale=scale, interpolation=_BICUBIC),
            v2.RandomHorizontalFlip(),
            *_to_float(mean, std),
        ]
    )


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box ``(y0, y1, x0, x1)`` covering about ``1 - lam`` of the image, centred uniformly, clipped."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


class MixupCutmix:
    """Batch mixup (Zhang et al. 2018) or cutmix (Yun et al. 2019) with soft, smoothed targets.

    Idea from timm ``data/mixup.py`` (batch mode): one ``lam`` per batch, each sample mixed with the
    batch flipped along dim 0; with probability ``switch_prob`` cutmix is used instead of mixup, and
    its ``lam`` is corrected to the clipped box area. Defaults are the MAE fine-tuning recipe (NOTES #17).
    Seeded by its own ``numpy`` generator: the same seed gives the same sequence of ``lam`` and boxes.

    ``__call__(pixel_values [N, C, H, W], labels [N] int or [N, K] soft) -> (mixed [N, C, H, W], targets [N, K])``;
    the targets are distributions (rows sum to 1).
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        switch_prob: float = 0.5,
        prob: float = 1.0,
        label_smoothing: float = 0.1,
        seed: int | None = None,
    ):
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("MixupCutmix needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.switch_prob = switch_prob
        self.prob = prob
        self.label_smoothing = label_smoothing
        self.rng = np.random.default_rng(seed)
        self.last_lam = 1.0
        self.last_mode = "none"

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Soft targets ``[N, K]``: smoothed one-hots for class ids, soft labels passed through."""
        if labels.is_floating_point() and labels.dim() == 2:
            return labels
        return smooth_one_hot(labels, self.num_classes, self.label_smoothing)

    def _sample(self) -> tuple[str, float]:
        if self.rng.random() >= self.prob:
            return "none", 1.0
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or self.rng.random() < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return ("cutmix" if use_cutmix else "mixup"), float(self.rng.beta(alpha, alpha))

    def __call__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if pixel_values.dim() != 4 or pixel_values.shape[0] != labels.shape[0]:
            raise ValueError(
                f"expected pixel_values [N, C, H, W] and labels [N] or [N, K], got {tuple(pixel_values.shape)} "
                f"and {tuple(labels.shape)}"
            )
        targets = self.targets(labels).to(pixel_values.dtype)
        mode, lam = self._sample()
        if mode == "mixup":
            mixed = pixel_values * lam + pixel_values.flip(0) * (1.0 - lam)
        elif mode == "cutmix":
            height, width = pixel_values.shape[-2:]
            y0, y1, x0, x1 = cutmix_box(height, width, lam, self.rng)
            mixed = pixel_values.clone()
            mixed[..., y0:y1, x0:x1] = pixel_values.flip(0)[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
        else:
            mixed = pixel_values
        self.last_mode, self.last_lam = mode, lam
        return mixed, targets * lam + targets.flip(0) * (1.0 - lam)
