"""Pure key renames from timm / facebookresearch/mae ViT names to transformers 5.x names.

facebookresearch/mae (``models_mae.py``, ``models_vit.py``) and the seed paper's release store
ViTs in timm's naming (NOTES #19)::

    cls_token, pos_embed, patch_embed.proj.*, norm.*, head.*
    blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*
    mask_token, decoder_embed.*, decoder_pos_embed, decoder_blocks.N.*, decoder_norm.*, decoder_pred.*

transformers 5.x names the same tensors ``vit.embeddings.*``, ``vit.layers.N.{layernorm_before,
attention.{q,k,v,o}_proj, layernorm_after, mlp.fc1, mlp.fc2}.*``, ``vit.layernorm.*``,
``classifier.*`` and ``decoder.{mask_token, decoder_embed, decoder_pos_embed, decoder_layers.N.*,
decoder_norm, decoder_pred}.*`` (checked by instantiating tiny models). timm's fused ``attn.qkv``
is ``[3 * D, D]`` with q, k, v stacked along dim 0.

Position tables are resized to the target config's grid: bicubically for learned tables (as
MAE's ``util/pos_embed.py`` ``interpolate_pos_embed`` does before fine-tuning), and, for
``ViTMAEForPreTraining``, whose tables are fixed 2-D sin-cos, by regenerating the sin-cos table
at the new grid when the checkpoint's table is that sin-cos table (it is for every MAE
checkpoint), which is exactly what MAE would have built at that size.
"""

from __future__ import annotations

import logging
import math
import re

import torch
from transformers import ViTConfig, ViTMAEConfig

from .mae import sincos_2d_table

logger = logging.getLogger(__name__)

# timm block sub-module -> transformers layer sub-module (attn.qkv is split separately).
BLOCK_RENAMES: dict[str, str] = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.o_proj",
    "norm2": "layernorm_after",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_BLOCK_PARTS = "|".join(re.escape(p) for p in (*BLOCK_RENAMES, "attn.qkv"))
_ENCODER_KEY = re.compile(
    rf"^(cls_token|pos_embed|patch_embed\.proj\.(weight|bias)|norm\.(weight|bias)|blocks\.\d+\.({_BLOCK_PARTS})\.(weight|bias))$"
)
_HEAD_KEY = re.compile(r"^head\.(weight|bias)$")
_DECODER_KEY = re.compile(
    rf"^(mask_token|decoder_pos_embed|decoder_(embed|norm|pred)\.(weight|bias)|decoder_blocks\.\d+\.({_BLOCK_PARTS})\.(weight|bias))$"
)
# Global-pool checkpoints: MAE fine-tuning with --global_pool replaces norm by fc_norm after the mean.
_GLOBAL_POOL_KEY = re.compile(r"^fc_norm\.(weight|bias)$")
SINCOS_ATOL = 1e-4


def is_encoder_key(key: str) -> bool:
    return bool(_ENCODER_KEY.match(key))


def is_head_key(key: str) -> bool:
    return bool(_HEAD_KEY.match(key))


def is_decoder_key(key: str) -> bool:
    return bool(_DECODER_KEY.match(key))


def unknown_keys(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Keys with no transformers counterpart (layer scale, register/distillation tokens, fc_norm, ...)."""
    return sorted(k for k in state_dict if not (is_encoder_key(k) or is_head_key(k) or is_decoder_key(k)))


def check_keys(state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Raise a ``ValueError`` naming ``source`` when a key cannot be mapped to HF ViT / ViTMAE."""
    pooled = [k for k in state_dict if _GLOBAL_POOL_KEY.match(k)]
    if pooled:
        raise ValueError(
            f"{source}: global-pool checkpoint ({', '.join(pooled)}): its classifier reads fc_norm(mean of the patch "
            "tokens), while transformers' ViTForImageClassification reads layernorm(CLS token). The fine-tuned model "
            "cannot be represented exactly; convert the MAE pretraining checkpoint (or a CLS-pooled one) instead."
        )
    unknown = unknown_keys(state_dict)
    if unknown:
        shown = ", ".join(unknown[:20]) + (f", ... ({len(unknown) - 20} more)" if len(unknown) > 20 else "")
        raise ValueError(
            f"{source}: {len(unknown)} keys have no counterpart in transformers' ViT/ViTMAE: {shown}. "
            "Only vanilla timm/MAE ViTs (CLS token, learned or sin-cos absolute positions, no layer scale, "
            "no register or distillation tokens) can be converted."
        )


def resize_pos_embed(
    pos_embed: torch.Tensor, new_grid: int | tuple[int, int], num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Bicubically resize a square position table ``[1, P + h*w, D]`` to ``[1, P + H*W, D]``.

    The ``P`` prefix rows (the CLS token's) are kept as they are; only the patch grid is interpolated.
    Idea from facebookresearch/mae ``util/pos_embed.py`` ``interpolate_pos_embed`` (bicubic,
    ``align_corners=False``). Returns the input itself when the grid already has the new size.
    """
    new_h, new_w = (new_grid, new_grid) if isinstance(new_grid, int) else new_grid
    squeeze = pos_embed.dim() == 2
    table = pos_embed[None] if squeeze else pos_embed
    prefix, grid = table[:, :num_prefix_tokens], table[:, num_prefix_tokens:]
    old = math.isqrt(grid.shape[1])
    if old * old != grid.shape[1]:
        raise ValueError(f"position table has {grid.shape[1]} patch rows, not a square grid")
    if (old, old) == (new_h, new_w):
        return pos_embed
    dim = grid.shape[-1]
    grid = grid.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    grid = torch.nn.functional.interpolate(grid, size=(new_h, new_w), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, dim).to(table.dtype)
    out = torch.cat([prefix, grid], dim=1)
    return out[0] if squeeze else out


def is_sincos_pos_embed(pos_embed: torch.Tensor, atol: float = SINCOS_ATOL) -> bool:
    """True when ``[1, 1 + g*g, D]`` is MAE's fixed 2-D sin-cos table of its grid (zero CLS row)."""
    grid = math.isqrt(pos_embed.shape[-2] - 1)
    dim = pos_embed.shape[-1]
    if grid * grid != pos_embed.shape[-2] - 1 or dim % 4:
        return False
    return torch.allclose(pos_embed.reshape(-1, dim).float(), sincos_2d_table(grid, dim), atol=atol)


def _resize_fixed_sincos(pos_embed: torch.Tensor, new_grid: int, name: str) -> torch.Tensor:
    """A ViTMAE table at ``new_grid``: regenerated when it is sin-cos, else bicubically resized (with a warning)."""
    if pos_embed.shape[1] - 1 == new_grid * new_grid:
        return pos_embed
    if is_sincos_pos_embed(pos_embed):
        logger.info("%s: regenerated the fixed 2-D sin-cos table for a %dx%d grid", name, new_grid, new_grid)
        return sincos_2d_table(new_grid, pos_embed.shape[-1])[None].to(pos_embed.dtype)
    logger.warning("%s is not MAE's sin-cos table; resized it bicubically to %dx%d", name, new_grid, new_grid)
    return resize_pos_embed(pos_embed, new_grid)


def _rename_blocks(state_dict: dict[str, torch.Tensor], src: str, dst: str) -> dict[str, torch.Tensor]:
    """``{src}.N.*`` timm blocks -> ``{dst}.N.*`` transformers layers, splitting ``attn.qkv`` into q, k, v."""
    out: dict[str, torch.Tensor] = {}
    pattern = re.compile(rf"^{re.escape(src)}\.(\d+)\.(.+)\.(weight|bias)$")
    for key, value in state_dict.items():
        match = pattern.match(key)
        if not match:
            continue
        index, part, kind = match.groups()
        if part == "attn.qkv":
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{dst}.{index}.attention.{name}.{kind}"] = chunk.clone()
        else:
            out[f"{dst}.{index}.{BLOCK_RENAMES[part]}.{kind}"] = value
    return out


def _grid(config: ViTConfig | ViTMAEConfig) -> int:
    if config.image_size % config.patch_size:
        raise ValueError(f"image_size {config.image_size} is not a multiple of patch_size {config.patch_size}")
    return config.image_size // config.patch_size


def _encoder(state_dict: dict[str, torch.Tensor], pos_embed: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {
        "vit.embeddings.cls_token": state_dict["cls_token"],
        "vit.embeddings.position_embeddings": pos_embed,
        "vit.embeddings.patch_embeddings.projection.weight": state_dict["patch_embed.proj.weight"],
    }
    if "patch_embed.proj.bias" in state_dict:
        out["vit.embeddings.patch_embeddings.projection.bias"] = state_dict["patch_embed.proj.bias"]
    out.update(_rename_blocks(state_dict, "blocks", "vit.layers"))
    for kind in ("weight", "bias"):
        if f"norm.{kind}" in state_dict:
            out[f"vit.layernorm.{kind}"] = state_dict[f"norm.{kind}"]
    return out


def timm_to_hf_vit(state_dict: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """timm/MAE names -> ``ViTForImageClassification`` names, the position table resized to ``config``'s grid.

    ``head.*`` becomes ``classifier.*`` when present; MAE decoder keys are dropped (an MAE
    pretraining checkpoint converts to a classifier with a new head).
    """
    check_keys(state_dict)
    pos_embed = resize_pos_embed(state_dict["pos_embed"], _grid(config))
    if pos_embed is not state_dict["pos_embed"]:
        old = math.isqrt(state_dict["pos_embed"].shape[1] - 1)
        logger.info("pos_embed: resized bicubically from a %dx%d to a %dx%d grid", old, old, *(_grid(config),) * 2)
    out = _encoder(state_dict, pos_embed)
    for kind in ("weight", "bias"):
        if f"head.{kind}" in state_dict:
            out[f"classifier.{kind}"] = state_dict[f"head.{kind}"]
    dropped = [k for k in state_dict if is_decoder_key(k)]
    if dropped:
        logger.info("Dropped %d MAE decoder tensors for the classifier", len(dropped))
    return out


def timm_to_hf_vitmae(state_dict: dict[str, torch.Tensor], config: ViTMAEConfig) -> dict[str, torch.Tensor]:
    """timm/MAE names (encoder + decoder) -> ``ViTMAEForPreTraining`` names at ``config``'s grid.

    Both fixed position tables are regenerated as sin-cos at a new grid (see module docstring);
    a ``head.*`` (never in an MAE pretraining checkpoint) is dropped with a warning.
    """
    check_keys(state_dict)
    grid = _grid(config)
    out = _encoder(state_dict, _resize_fixed_sincos(state_dict["pos_embed"], grid, "pos_embed"))
    out["decoder.mask_token"] = state_dict["mask_token"]
    out["decoder.decoder_pos_embed"] = _resize_fixed_sincos(state_dict["decoder_pos_embed"], grid, "decoder_pos_embed")
    for name in ("decoder_embed", "decoder_norm", "decoder_pred"):
        for kind in ("weight", "bias"):
            if f"{name}.{kind}" in state_dict:  # an absent one is reported by the loader's key check
                out[f"decoder.{name}.{kind}"] = state_dict[f"{name}.{kind}"]
    out.update(_rename_blocks(state_dict, "decoder_blocks", "decoder.decoder_layers"))
    if any(is_head_key(k) for k in state_dict):
        logger.warning("Dropped head.* from an MAE checkpoint: ViTMAEForPreTraining has no classifier")
    return out
