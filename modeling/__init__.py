"""Facial expression recognition with vanilla ViTs pretrained as Masked Autoencoders.

The public entry points are imported lazily, so that ``import modeling`` stays cheap and a
command such as ``python -m modeling.convert`` loads only what it uses.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "EMOTIONS": "labels",
    "labels_for": "labels",
    "id2label": "labels",
    "label2id": "labels",
    "mae_config": "sizes",
    "vit_config": "sizes",
    "image_processor_for": "sizes",
    "build_mae_for_pretraining": "mae",
    "mae_to_classifier": "conversion",
    "FERMetrics": "metrics",
    "fer_metrics": "metrics",
    "make_compute_metrics": "metrics",
    "load_fer_dataset": "data",
    "preparation_report": "data",
    "convert_checkpoint": "convert",
    "FERTrainer": "trainer",
    "class_weights": "sampling",
    "param_groups": "lr_decay",
    "enable_drop_path": "drop_path",
    "build_train_transform": "transforms",
    "build_eval_transform": "transforms",
    "FERPredictor": "inference",
    "default_model_dir": "shipped",
    "FaceDetector": "faces",
    "HaarFaceDetector": "faces",
    "write_model_card": "model_card",
    "push_model_dir": "push",
    "export_onnx": "export",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
