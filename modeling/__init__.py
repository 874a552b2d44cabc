"""Facial expression recognition with vanilla ViTs pretrained as Masked Autoencoders.

The package by concern, one subpackage each:

- ``models``: size presets, MAE initialisation, drop path, MAE -> classifier, foreign checkpoint import, the
  convolutional teacher for distillation;
- ``data``: dataset builders for FER+, RAF-DB, AffectNet and image folders;
- ``evaluation``: metrics, plots, MAE reconstruction grids;
- ``training``: the Trainer glue of ``run_mae.py`` / ``run_finetune.py`` and its pure helpers;
- ``inference``: ``FERPredictor``, the ``fer-predict`` command, faces, export, evaluation reports;
- ``hub``: model cards, Hub upload, the model shipped in ``default_model/``;
- at the top, ``labels`` (the canonical class names), ``cli`` (one-line user errors) and ``precision`` (the
  arithmetic a CPU or GPU runs well: training and inference both choose by it), used everywhere.

Layers, lowest first. A module imports from its own subpackage or from a lower layer; never from a layer
above, nor sideways from another subpackage of its own layer (``tests/test_layout.py`` checks this):

    0  modeling (labels, cli, precision)
    1  models, data, evaluation
    2  training, inference
    3  hub

The public entry points are imported lazily, so that ``import modeling`` stays cheap and a
command such as ``python -m modeling.models.import_checkpoint`` loads only what it uses.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Lowest first; "" is the top level (modeling/labels.py, modeling/cli.py). The docstring above shows the same.
_LAYERS: tuple[tuple[str, ...], ...] = (
    ("",),
    ("models", "data", "evaluation"),
    ("training", "inference"),
    ("hub",),
)

_EXPORTS = {
    "EMOTIONS": "labels",
    "labels_for": "labels",
    "id2label": "labels",
    "label2id": "labels",
    "mae_config": "models.sizes",
    "vit_config": "models.sizes",
    "image_processor_for": "models.sizes",
    "build_mae_for_pretraining": "models.mae",
    "mae_to_classifier": "models.mae_to_vit",
    "convert_checkpoint": "models.import_checkpoint",
    "enable_drop_path": "models.drop_path",
    "load_fer_dataset": "data",
    "preparation_report": "data",
    "FERMetrics": "evaluation.metrics",
    "fer_metrics": "evaluation.metrics",
    "make_compute_metrics": "evaluation.metrics",
    "FERTrainer": "training.trainer",
    "class_weights": "training.sampling",
    "param_groups": "training.lr_decay",
    "build_train_transform": "training.transforms",
    "build_eval_transform": "training.transforms",
    "FERPredictor": "inference.predictor",
    "default_model_dir": "inference.shipped",
    "FaceDetector": "inference.faces",
    "HaarFaceDetector": "inference.faces",
    "export_onnx": "inference.export",
    "write_model_card": "hub.model_card",
    "push_model_dir": "hub.push",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
