"""Stochastic depth (drop path) for Hugging Face ViT encoders, which have none (NOTES #5).

Huang et al. 2016; per-layer rates rise linearly from 0 to ``drop_path`` over the blocks, as in timm's
``VisionTransformer`` and MAE fine-tuning (0.1 for ViT-B, NOTES #17). In transformers 5.x each
``ViTLayer`` adds two residual branches: ``attention`` (returns ``(output, weights)``) and ``mlp``; their
outputs go through ``layer.dropout`` and are then added to the residual stream. A forward hook on each
of the two submodules drops the whole branch per sample (scaling the kept samples by ``1 / keep``),
which is exactly drop path on the branch (dropout after it is elementwise and commutes).

Hooks add no parameters, buffers or state-dict keys, so the saved model stays a plain
``ViTForImageClassification``; they act only while the module is in ``train()`` mode.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

_HANDLES_ATTR = "_drop_path_handles"


def drop_path_rates(drop_path: float, num_layers: int) -> list[float]:
    """Per-layer drop rates ``[L]``, linear from 0 (first block) to ``drop_path`` (last block)."""
    if not 0.0 <= drop_path < 1.0:
        raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
    if num_layers == 1:
        return [drop_path]
    return [drop_path * i / (num_layers - 1) for i in range(num_layers)]


def drop_path_branch(branch: torch.Tensor, rate: float) -> torch.Tensor:
    """Zero whole samples of ``branch`` ``[N, ...]`` with probability ``rate``, scale the rest by ``1 / (1 - rate)``."""
    keep = 1.0 - rate
    mask_shape = (branch.shape[0],) + (1,) * (branch.dim() - 1)
    mask = branch.new_empty(mask_shape).bernoulli_(keep)
    return branch * mask.div_(keep)


def _make_hook(rate: float):
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if not module.training or rate == 0.0:
            return None  # None keeps the output unchanged
        if isinstance(output, tuple):  # ViTAttention returns (attn_output, attn_weights)
            return (drop_path_branch(output[0], rate), *output[1:])
        return drop_path_branch(output, rate)

    return hook


def _vit_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks, in order: modules with ``attention`` and ``mlp`` children inside ``layers``."""
    layers = [
        module
        for name, module in model.named_modules()
        if hasattr(module, "attention") and hasattr(module, "mlp") and name.rsplit(".", 2)[-2:-1] == ["layers"]
    ]
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no ViT blocks (modules `...layers.N` with `attention` and `mlp`)"
        )
    return layers


def enable_drop_path(model: nn.Module, drop_path: float) -> nn.Module:
    """Register drop-path hooks on every block's attention and MLP branches; returns ``model`` (in place).

    Calling it again replaces the previous rates; ``drop_path=0`` is the same as :func:`disable_drop_path`.
    """
    disable_drop_path(model)
    if drop_path == 0.0:
        return model
    layers = _vit_layers(model)
    rates = drop_path_rates(drop_path, len(layers))
    handles = []
    for layer, rate in zip(layers, rates):
        handles.append(layer.attention.register_forward_hook(_make_hook(rate)))
        handles.append(layer.mlp.register_forward_hook(_make_hook(rate)))
    # A plain attribute (not a Module, Parameter or buffer): invisible to state_dict and save_pretrained.
    object.__setattr__(model, _HANDLES_ATTR, handles)
    logger.info("Drop path enabled on %d blocks, rates %s", len(layers), [round(r, 4) for r in rates])
    return model


def disable_drop_path(model: nn.Module) -> nn.Module:
    """Remove the hooks of :func:`enable_drop_path`; the model is then exactly the unpatched one."""
    for handle in model.__dict__.pop(_HANDLES_ATTR, []):
        handle.remove()
    return model
