"""Optimizer parameter groups: layer-wise lr decay for fine-tuning, plain weight-decay split for pretraining.

Idea from MAE's ``util/lr_decay.py`` (He et al. 2022, after BEiT, Bao et al. 2022): the patch embedding,
cls and position tokens are layer 0, encoder block ``N`` is layer ``N + 1``, and everything after the
encoder (final norm, classifier) is layer ``L + 1``; a parameter of layer ``i`` trains with
``base_lr * layer_decay ** (L + 1 - i)``. Norm weights, biases and the cls/position tokens get no weight
decay (MAE recipe, NOTES #16-17). Written against the transformers 5.x ViT names (NOTES #4)
``vit.embeddings.*``, ``vit.layers.N.*``, ``vit.layernorm``, ``classifier``; the 4.x ``encoder.layer.N``,
timm/MAE ``blocks.N`` and prefixes added by peft (``base_model.model.``) map the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from torch import nn

logger = logging.getLogger(__name__)

# Parameter-name components that never get weight decay, beside every 0-/1-D tensor (norms, biases).
NO_WEIGHT_DECAY_NAMES: tuple[str, ...] = ("cls_token", "position_embeddings", "pos_embed", "dist_token")

_BLOCK = re.compile(r"(?:^|\.)(?:layers|encoder\.layer|blocks)\.(\d+)\.")
_EMBEDDING = re.compile(r"(?:^|\.)(?:embeddings|patch_embed|cls_token|pos_embed|dist_token)(?:\.|$)")


def layer_id_for(name: str, num_layers: int) -> int:
    """Depth of a parameter: 0 for embeddings/tokens, ``N + 1`` for block ``N``, ``num_layers + 1`` after."""
    block = _BLOCK.search(name)
    if block is not None:
        index = int(block.group(1))
        if index >= num_layers:
            raise ValueError(f"Parameter {name!r} is in block {index} but the model has {num_layers} layers")
        return index + 1
    if _EMBEDDING.search(name) is not None:
        return 0
    return num_layers + 1


def _skips_weight_decay(name: str, param: nn.Parameter, no_weight_decay: Sequence[str]) -> bool:
    return param.ndim <= 1 or any(part in no_weight_decay for part in name.split("."))


def _num_layers(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    num_layers = getattr(config, "num_hidden_layers", None)
    if num_layers is None:
        raise ValueError(f"{type(model).__name__} has no config.num_hidden_layers; pass num_layers explicitly")
    return int(num_layers)


def param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float,
    base_lr: float,
    no_weight_decay: Sequence[str] = NO_WEIGHT_DECAY_NAMES,
    num_layers: int | None = None,
) -> list[dict[str, Any]]:
    """Optimizer groups of the trainable parameters, one per (layer id, decay or not).

    Each group has ``params``, ``param_names``, ``lr = base_lr * layer_decay ** (num_layers + 1 - layer_id)``,
    ``lr_scale``, ``weight_decay`` (0 for norms, biases and the names in ``no_weight_decay``) and ``layer_id``.
    ``num_layers`` defaults to ``model.config.num_hidden_layers`` (also reached through a peft wrapper).
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    num_layers = _num_layers(model) if num_layers is None else num_layers
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer_id = layer_id_for(name, num_layers)
        no_decay = _skips_weight_decay(name, param, no_weight_decay)
        key = (layer_id, no_decay)
        if key not in groups:
            scale = layer_decay ** (num_layers + 1 - layer_id)
            groups[key] = {
                "params": [],
                "param_names": [],
                "lr": base_lr * scale,
                "lr_scale": scale,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "layer_id": layer_id,
            }
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    ordered = [groups[key] for key in sorted(groups)]
    logger.info(
        "Layer decay %.3g over %d layers: %d groups, lr scales %s",
        layer_decay,
        num_layers,
        len(ordered),
        sorted({round(g["lr_scale"], 6) for g in ordered}),
    )
    return ordered


def no_decay_param_groups(
    model: nn.Module, weight_decay: float, no_weight_decay: Sequence[str] = NO_WEIGHT_DECAY_NAMES
) -> list[dict[str, Any]]:
    """Two groups of the trainable parameters for MAE pretraining: with ``weight_decay``, and with none.

    No ``lr`` key: the optimizer's lr applies to both. Empty groups are left out.
    """
    decay: dict[str, Any] = {"params": [], "param_names": [], "weight_decay": weight_decay}
    no_decay: dict[str, Any] = {"params": [], "param_names": [], "weight_decay": 0.0}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = no_decay if _skips_weight_decay(name, param, no_weight_decay) else decay
        group["params"].append(param)
        group["param_names"].append(name)
    return [group for group in (decay, no_decay) if group["params"]]
