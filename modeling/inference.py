"""Batched facial-expression classification of face crops with a saved image classifier.

``pipeline("image-classification")`` preprocesses one image at a time. :class:`FERPredictor`
stacks crops of equal size and resizes, rescales and normalises them in a few torch calls
(bilinear with antialias, the resampling of the model's image processor), then runs the model
under ``torch.inference_mode()`` (bf16 autocast on CUDA or a bf16-capable CPU if asked) or through ONNX Runtime.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .faces import to_rgb
from .precision import cpu_has_bf16  # noqa: F401  (re-exported: modeling.inference.cpu_has_bf16)

logger = logging.getLogger(__name__)


class NotAnImageClassifierError(ValueError):
    """The model directory or Hub id does not hold an image classifier."""


def _check_is_image_classifier(model: str | Path, cache_dir: str | None = None):
    """The model's config, after checking that it describes an image classifier with labelled classes."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    path = Path(model)
    if path.exists() and not (path / "config.json").is_file():
        raise NotAnImageClassifierError(f"{path} has no config.json: it is not a saved transformers model")
    try:
        config = AutoConfig.from_pretrained(str(model), cache_dir=cache_dir)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise NotAnImageClassifierError(f"{model}: cannot read a transformers config ({err})") from err
    architectures = list(getattr(config, "architectures", None) or [])
    if architectures and not any(a.endswith("ForImageClassification") for a in architectures):
        hint = (
            " Convert an MAE checkpoint with modeling.conversion.mae_to_classifier."
            if "MAE" in str(architectures)
            else ""
        )
        raise NotAnImageClassifierError(
            f"{model} holds a {', '.join(architectures)}, not an image classifier (*ForImageClassification).{hint}"
        )
    if config.model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        raise NotAnImageClassifierError(f"{model}: model type {config.model_type!r} has no image-classification head")
    return config


class FERPredictor:
    """Classifies face crops with a local model directory or Hub id.

    ``onnx`` runs an exported ``.onnx`` file (see :mod:`modeling.export`) with ONNX Runtime
    instead of PyTorch; labels and preprocessing still come from ``model``.
    """

    def __init__(
        self,
        model: str | Path,
        device: str | None = None,
        bf16: bool = False,
        onnx: str | Path | None = None,
        cache_dir: str | None = None,
    ):
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        config = _check_is_image_classifier(model, cache_dir)
        self.labels: list[str] = [config.id2label[i] for i in range(config.num_labels)]
        if all(n == f"LABEL_{i}" for i, n in enumerate(self.labels)):
            logger.warning("%s has no class names in its config (id2label is LABEL_0..); label order unknown", model)
        try:
            self.processor = AutoImageProcessor.from_pretrained(str(model), cache_dir=cache_dir)
        except OSError as err:
            raise NotAnImageClassifierError(
                f"{model} has no image processor (preprocessor_config.json): {err}"
            ) from err
        self._read_preprocessing(self.processor)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # bf16 autocast: on CUDA, and on CPUs with bf16 matrix units (AMX / AVX512-BF16), where oneDNN runs
        # ViT matmuls about 3x faster than float32; elsewhere autocast would only add casts.
        self.bf16 = bool(bf16) and (self.device.type == "cuda" or (self.device.type == "cpu" and cpu_has_bf16()))
        if bf16 and not self.bf16:
            logger.warning("bf16 autocast needs CUDA or a CPU with bf16 units; running in float32 on %s", self.device)
        self.session = None
        self.model = None
        if onnx is not None:
            import onnxruntime as ort

            if not Path(onnx).is_file():
                raise FileNotFoundError(f"ONNX file not found: {onnx}")

            providers = ["CPUExecutionProvider"]
            if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            self.session = ort.InferenceSession(str(onnx), providers=providers)
            self._onnx_input = self.session.get_inputs()[0].name
        else:
            try:
                self.model = AutoModelForImageClassification.from_pretrained(str(model), cache_dir=cache_dir)
            except (OSError, ValueError) as err:
                raise NotAnImageClassifierError(f"{model}: cannot load an image classifier ({err})") from err
            self.model.eval().to(self.device)

    def _read_preprocessing(self, processor: Any) -> None:
        size = dict(getattr(processor, "size", None) or {})
        if "height" in size and "width" in size:
            self.size = (int(size["height"]), int(size["width"]))
        elif "shortest_edge" in size:
            # Square inputs: a face crop is nearly square, and FER models are trained on squares.
            self.size = (int(size["shortest_edge"]),) * 2
        else:
            raise NotAnImageClassifierError(f"Unsupported image processor size {size!r}")
        if getattr(processor, "do_center_crop", False):
            crop = processor.crop_size
            self.size = (int(crop["height"]), int(crop["width"]))
        self.do_resize = bool(getattr(processor, "do_resize", True))
        self.rescale = float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 1.0
        do_norm = bool(getattr(processor, "do_normalize", True))
        mean = processor.image_mean if do_norm else [0.0, 0.0, 0.0]
        std = processor.image_std if do_norm else [1.0, 1.0, 1.0]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """``pixel_values [N, 3, H, W]`` float32 from uint8 crops (``[h, w]`` gray or ``[h, w, 3]`` RGB, any sizes).

        Crops of equal shape are resized together in one ``F.interpolate`` call, on uint8 in
        channels-last layout: torch's vectorised uint8 antialias kernel (the one torchvision's
        resize, hence the transformers image processor, uses) is much faster than float32 and
        rounds like the processor does.
        """
        out = torch.empty((len(images), 3, *self.size), dtype=torch.uint8)
        groups: dict[tuple[int, ...], list[int]] = {}
        rgb = [to_rgb(np.asarray(im)) for im in images]
        for i, im in enumerate(rgb):
            if im.dtype != np.uint8:
                raise ValueError(f"Expected uint8 images, got {im.dtype} for image {i}")
            groups.setdefault(im.shape, []).append(i)
        for shape, idx in groups.items():
            # [n, h, w, 3] -> [n, 3, h, w] view with channels-last strides, no copy
            x = torch.from_numpy(np.stack([rgb[i] for i in idx])).permute(0, 3, 1, 2)
            if self.do_resize and tuple(shape[:2]) != self.size:
                x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
            elif tuple(shape[:2]) != self.size:
                raise ValueError(f"Image of size {shape[:2]} but the processor does not resize to {self.size}")
            out[idx] = x
        return (out.float() * self.rescale - self.mean) / self.std

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[N, num_labels]`` float32 logits for ``pixel_values [N, 3, H, W]``."""
        if self.session is not None:
            (logits,) = self.session.run(None, {self._onnx_input: pixel_values.numpy()})
            return torch.from_numpy(logits).float()
        with torch.inference_mode():
            x = pixel_values.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(pixel_values=x).logits
            return logits.float().cpu()

    def predict_proba(self, images: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """``[N, num_labels]`` class probabilities (softmax) for uint8 face crops."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        probs = [np.zeros((0, len(self.labels)), np.float32)]
        for start in range(0, len(images), batch_size):
            pixel_values = self.preprocess(images[start : start + batch_size])
            probs.append(torch.softmax(self.logits(pixel_values), dim=-1).numpy())
        return np.concatenate(probs)

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 64) -> list[dict[str, Any]]:
        """Per crop: ``{"label", "score", "scores": {class name: probability}}``."""
        results = []
        for p in self.predict_proba(images, batch_size):
            top = int(p.argmax())
            scores = {name: round(float(v), 6) for name, v in zip(self.labels, p)}
            results.append({"label": self.labels[top], "score": round(float(p[top]), 6), "scores": scores})
        return results
