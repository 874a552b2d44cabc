"""The convolutional teacher used for distillation into the ViT: a training aid, never shipped.

DeiT (Touvron et al., ICML 2021) lifted ViTs trained on ImageNet alone with a convnet teacher; on the 28,558 FER+
training faces a ViT has even less data to learn its inductive biases from. The teacher here is torchvision's
ResNet-18 made for 48 px faces: a 3x3 stride-2 stem and no max pool, so its first stage runs at 24x24 (the
ImageNet stem would leave 12x12). It reads the same normalised ``[N, 3, S, S]`` batches as the ViT, so the
Trainer gives it the student's augmented batch as it is; a student fine-tuned at a larger size than the teacher
was trained at (``--image_size``, see :mod:`modeling.models.resolution`) has its batch resized to the teacher's
size first (antialiased bilinear), so the teacher sees faces at the scale it learned.

Saved as ``teacher.safetensors`` plus ``teacher.json`` (architecture, labels, image size, normalisation); loaded
with safetensors only (no pickle).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .file_modes import share_like_other_outputs

TEACHER_WEIGHTS = "teacher.safetensors"
TEACHER_CONFIG = "teacher.json"
ARCHITECTURES = ("resnet18",)


class FaceResNet(nn.Module):
    """ResNet-18 for small face crops. ``pixel_values [N, 3, S, S]`` -> logits ``[N, num_labels]``."""

    def __init__(self, num_labels: int, architecture: str = "resnet18", image_size: int | None = None):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"teacher architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        net = torchvision.models.resnet18(num_classes=num_labels)
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.net = net
        self.architecture = architecture
        self.num_labels = num_labels
        self.image_size = image_size  # the size it was trained at; None: any input is fed as it is

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        if size is not None and tuple(pixel_values.shape[-2:]) != (size, size):
            pixel_values = F.interpolate(
                pixel_values, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return self.net(pixel_values)


def save_teacher(
    model: FaceResNet, path: str | Path, labels: Sequence[str], image_size: int, extra: dict[str, Any] | None = None
) -> Path:
    """Writes ``teacher.safetensors`` and ``teacher.json`` into the folder ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if len(labels) != model.num_labels:
        raise ValueError(f"{len(labels)} labels for a teacher with {model.num_labels} outputs")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / TEACHER_WEIGHTS))
    config = {"architecture": model.architecture, "labels": list(labels), "image_size": image_size, **(extra or {})}
    (path / TEACHER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    share_like_other_outputs(path)  # safetensors writes 0600 whatever the umask
    return path


def load_teacher(path: str | Path) -> tuple[FaceResNet, dict[str, Any]]:
    """``(model in eval mode, its teacher.json)`` from a folder written by :func:`save_teacher`; every tensor must
    match (strict loading)."""
    from safetensors.torch import load_file

    path = Path(path)
    for name in (TEACHER_CONFIG, TEACHER_WEIGHTS):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"{path}: no {name}; a teacher folder is written by python -m modeling.training.teacher"
            )
    config = json.loads((path / TEACHER_CONFIG).read_text())
    model = FaceResNet(len(config["labels"]), config.get("architecture", "resnet18"), config.get("image_size"))
    model.load_state_dict(load_file(str(path / TEACHER_WEIGHTS)), strict=True)
    return model.eval(), config
