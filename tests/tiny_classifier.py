"""A tiny FER+ classifier saved to disk, as ``save_pretrained`` writes it, for the inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from modeling.labels import FERPLUS_LABELS
from modeling.models.sizes import image_processor_for
from tests.tiny import tiny_vit_config


def save_tiny_classifier(
    path: Path, labels=FERPLUS_LABELS, seed: int = 0, calibration: np.ndarray | None = None
) -> Path:
    """Random tiny ViT (hidden 32, 2 layers, image 32, patch 8) + ImageNet-normalising processor in ``path``.

    A random ViT's CLS feature barely depends on the image, so it predicts one class for
    everything. With ``calibration`` images (uint8 ``[N, H, W]``), the head is re-centred and
    scaled on their features so that predictions spread over the classes: label agreement
    between two inference paths is then a real test.
    """
    from transformers import ViTForImageClassification

    torch.manual_seed(seed)
    model = ViTForImageClassification(tiny_vit_config(labels)).eval()
    processor = image_processor_for(32)
    if calibration is not None:
        from PIL import Image

        pixels = processor([Image.fromarray(im) for im in calibration], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            features = model.vit(pixel_values=pixels).last_hidden_state[:, 0]  # [N, hidden], after the final LayerNorm
            mean, std = features.mean(0), features.std(0) + 1e-6
            weight = torch.randn(len(labels), features.shape[1]) / std  # whitened random projection
            model.classifier.weight.copy_(weight)
            model.classifier.bias.copy_(-weight @ mean)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return Path(path)
