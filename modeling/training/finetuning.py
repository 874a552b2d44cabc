"""Fine-tuning plumbing kept out of ``run_finetune.py``: starting points, splits, LoRA, collation, TTA.

- :func:`load_classifier` turns any supported starting point into a ``ViTForImageClassification``
  whose head carries the dataset's labels: an MAE (converted, NOTES #3), a ViT/DeiT classifier or
  backbone (new head), an official ``.pth`` (converted), or a preset from scratch.
- :func:`select_splits` picks train / validation / test honestly: where a dataset has no separate
  validation split (RAF-DB; AffectNet, whose validation set is the literature's test set), a
  stratified, seeded validation set is carved from train and the official split stays the test set.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import AutoConfig, ViTForImageClassification, ViTMAEForPreTraining

from ..labels import label_maps
from ..models.mae_to_vit import mae_to_classifier
from ..models.resolution import resize_classifier
from ..models.sizes import BICUBIC, image_processor_for, vit_config

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
LORA_TARGETS = ("q_proj", "v_proj")  # transformers 5.x names (NOTES #4); "query"/"value" no longer match


def load_classifier(
    source: str | None,
    labels: Sequence[str],
    model_size: str = "base",
    image_size: int | None = None,
    patch_size: int = 16,
    work_dir: str | Path = ".",
    **overrides: Any,
) -> ViTForImageClassification:
    """A classifier for ``labels`` from ``source`` (None: a ``model_size`` preset from scratch)."""
    if source is None:
        config = vit_config(
            model_size, image_size=image_size or 224, patch_size=patch_size, labels=labels, **overrides
        )
        logger.info("Building a %s ViT classifier from scratch", model_size)
        return ViTForImageClassification(config)
    path = Path(source)
    if path.is_file() and path.suffix in CHECKPOINT_SUFFIXES:
        from ..models.import_checkpoint import convert_checkpoint

        converted = Path(work_dir) / f"converted-{path.stem}"
        source = str(convert_checkpoint(path, converted, image_size=image_size))
    config = AutoConfig.from_pretrained(source)
    if config.model_type == "vit_mae":
        logger.info("Converting the MAE encoder of %s to a classifier", source)
        model = mae_to_classifier(ViTMAEForPreTraining.from_pretrained(source), labels, **overrides)
    elif config.model_type in ("vit", "deit"):
        model = ViTForImageClassification.from_pretrained(
            source, ignore_mismatched_sizes=True, **label_maps(labels), **overrides
        )
    else:
        raise ValueError(f"{source}: model_type {config.model_type!r} is not a ViT; expected vit, deit or vit_mae")
    if image_size is not None and image_size != model.config.image_size:
        if image_size % model.config.patch_size:
            raise ValueError(
                f"{source}: --image_size {image_size} is not a multiple of its patch size {model.config.patch_size}"
            )
        model = resize_classifier(model, image_size)  # its position table resampled to the new token grid
    return model


def processor_for(source: str | None, image_size: int):
    """The source's image processor (its mean/std) when it has one, else MAE's ImageNet statistics."""
    if source is not None and not Path(source).is_file():
        from transformers import AutoImageProcessor

        try:
            processor = AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError):
            logger.info("%s has no image processor; using ImageNet mean/std", source)
        else:
            processor.size = {"height": image_size, "width": image_size}
            processor.resample = BICUBIC  # what this run's transforms resize with, whatever the source used
            return processor
    return image_processor_for(image_size)


def select_splits(
    splits: datasets.DatasetDict, validation_fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset, datasets.Dataset | None, str]:
    """``(train, validation, test, test_split_name)``.

    The test split is ``test`` when the dataset has one, else ``validation`` (AffectNet). When no split
    is left for validation, a stratified ``validation_fraction`` of train is held out with ``seed``.
    """
    test_name = "test" if "test" in splits else ("validation" if "validation" in splits else None)
    test = splits[test_name] if test_name else None
    if "validation" in splits and test_name != "validation":
        return splits["train"], splits["validation"], test, test_name or ""
    if not 0 < validation_fraction < 1:
        raise ValueError("This dataset has no validation split: validation_split_percentage must be in (0, 100)")
    carved = splits["train"].train_test_split(test_size=validation_fraction, seed=seed, stratify_by_column="label")
    logger.info(
        "No validation split: held out %d of %d training images (stratified, seed %d); %s stays the test set",
        len(carved["test"]),
        len(splits["train"]),
        seed,
        test_name,
    )
    return carved["train"], carved["test"], test, test_name or ""


def add_lora(model: ViTForImageClassification, r: int, alpha: float, dropout: float):
    """Wrap ``model`` with LoRA on ``q_proj``/``v_proj``; the classifier head is trained in full."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(LORA_TARGETS), modules_to_save=["classifier"]
    )
    return get_peft_model(model, config)


def trainable_share(model: torch.nn.Module) -> float:
    """Fraction of parameters that require grad."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / total


def collate_classification(examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """``pixel_values [N, 3, H, W]`` and ``labels`` (``[N]`` int64, or ``[N, C]`` float soft targets)."""
    pixel_values = torch.stack([e["pixel_values"] for e in examples])
    first = examples[0]["labels"]
    if isinstance(first, (list, tuple, np.ndarray, torch.Tensor)) and np.ndim(first) == 1:
        labels = torch.tensor(np.stack([np.asarray(e["labels"], dtype=np.float32) for e in examples]))
    else:
        labels = torch.tensor([int(e["labels"]) for e in examples], dtype=torch.int64)
    return {"pixel_values": pixel_values, "labels": labels}


def write_predictions_csv(
    path: str | Path, probabilities: np.ndarray, references: np.ndarray, id2label: dict[int, str]
) -> Path:
    """One row per test image: index, true label, predicted label, then each class probability."""
    path = Path(path)
    names = [id2label[i] for i in range(len(id2label))]
    preds = probabilities.argmax(-1)
    lines = [",".join(["index", "label", "prediction", *[f"p_{n}" for n in names]])]
    for i, (ref, pred, probs) in enumerate(zip(references, preds, probabilities)):
        lines.append(",".join([str(i), names[int(ref)], names[int(pred)], *[f"{p:.6f}" for p in probs]]))
    path.write_text("\n".join(lines) + "\n")
    return path


def save_json(path: str | Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    return path
