"""MAE checkpoint -> ``ViTForImageClassification``, with a clean config and checked keys.

``ViTForImageClassification.from_pretrained(mae_dir)`` does load the ``vit.*`` weights, but it
carries ``mask_ratio`` and the ``decoder_*`` fields into the classifier's config (NOTES #3).
Here the classifier's ``ViTConfig`` is built from the encoder fields alone plus the labels, the
state dict is loaded with the exact missing (``classifier.*``) and unexpected (``decoder.*``)
keys asserted, and the head is initialised as in MAE fine-tuning (``main_finetune.py``:
``trunc_normal_(head.weight, std=2e-5)``, He et al. 2022), so the first steps do not disturb
the pretrained features.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import ViTConfig, ViTForImageClassification, ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel

from ..labels import label_maps
from .sizes import encoder_fields

logger = logging.getLogger(__name__)

HEAD_INIT_STD = 2e-5
# Config fields that only make sense for MAE pretraining; a converted classifier must carry none.
MAE_ONLY_FIELDS: tuple[str, ...] = (
    "mask_ratio",
    "norm_pix_loss",
    "decoder_hidden_size",
    "decoder_num_hidden_layers",
    "decoder_num_attention_heads",
    "decoder_intermediate_size",
)


def is_mae_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a directory holding a ViTMAE ``config.json``."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return False
    import json

    return json.loads(config_file.read_text()).get("model_type") == "vit_mae"


def classifier_config_from_mae(mae_config: ViTMAEConfig, labels: Sequence[str], **overrides: Any) -> ViTConfig:
    """A ``ViTConfig`` with the MAE encoder's fields, the given labels, and no MAE-only field."""
    kwargs = encoder_fields(mae_config)
    kwargs.update(label_maps(labels))
    kwargs.update(overrides)
    return ViTConfig(**kwargs)


def _load_mae(source: ViTMAEForPreTraining | ViTMAEModel | str | Path) -> ViTMAEForPreTraining | ViTMAEModel:
    if isinstance(source, (ViTMAEForPreTraining, ViTMAEModel)):
        return source
    path = Path(source)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; expected a directory saved by ViTMAEForPreTraining")
    if not is_mae_checkpoint(path):
        raise ValueError(
            f"{path / 'config.json'}: model_type is not 'vit_mae'; expected an MAE pretraining checkpoint"
        )
    return ViTMAEForPreTraining.from_pretrained(path)


def mae_encoder_state_dict(mae: ViTMAEForPreTraining | ViTMAEModel) -> dict[str, torch.Tensor]:
    """The MAE's full state dict with every key in the classifier's ``vit.*`` naming."""
    state = mae.state_dict()
    if isinstance(mae, ViTMAEModel):  # bare encoder: keys have no "vit." prefix
        state = {f"vit.{k}": v for k, v in state.items()}
    return state


def mae_to_classifier(
    source: ViTMAEForPreTraining | ViTMAEModel | str | Path,
    labels: Sequence[str],
    head_init_std: float = HEAD_INIT_STD,
    **config_overrides: Any,
) -> ViTForImageClassification:
    """Convert an MAE (model object or saved directory) to a ``ViTForImageClassification``.

    ``config_overrides`` may change non-architectural fields (dropout probabilities, ...). The
    encoder of the result computes exactly what the MAE encoder computes on unmasked input.
    """
    mae = _load_mae(source)
    config = classifier_config_from_mae(mae.config, labels, **config_overrides)
    model = ViTForImageClassification(config)
    state = mae_encoder_state_dict(mae)
    result = model.load_state_dict(state, strict=False)

    expected_missing = {"classifier.weight", "classifier.bias"}
    expected_unexpected = {k for k in state if k.startswith("decoder.")}
    if set(result.missing_keys) != expected_missing or set(result.unexpected_keys) != expected_unexpected:
        raise RuntimeError(
            "MAE -> classifier conversion: unexpected key sets. "
            f"missing={sorted(set(result.missing_keys) - expected_missing)}, "
            f"unexpected={sorted(set(result.unexpected_keys) - expected_unexpected)}"
        )
    with torch.no_grad():
        nn.init.trunc_normal_(model.classifier.weight, std=head_init_std)
        nn.init.zeros_(model.classifier.bias)
    # The classifier learns its position table during fine-tuning (MAE fine-tunes pos_embed too).
    model.vit.embeddings.position_embeddings.requires_grad_(True)
    logger.info(
        "Converted MAE encoder (%d layers, width %d) to a %d-class ViTForImageClassification; dropped %d decoder tensors",
        config.num_hidden_layers,
        config.hidden_size,
        config.num_labels,
        len(expected_unexpected),
    )
    return model
