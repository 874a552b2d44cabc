"""A from-scratch ``ViTMAEForPreTraining`` that is initialised as MAE intends.

transformers 5.x leaves the fixed 2-D sin-cos position tables of the encoder and decoder,
the cls token and the mask token all zero when the model is built from a config: the
embeddings' init returns early once the patch projection was initialised (NOTES #1). MAE
pretraining would then run with no position signal at all. :func:`build_mae_for_pretraining`
rebuilds the tables and tokens after construction, following facebookresearch/mae
(``models_mae.py`` ``initialize_weights``, He et al. 2022): sin-cos tables, cls/mask tokens
from N(0, 0.02), the patch projection as a flattened linear layer (xavier-uniform), and
optionally xavier-uniform linear layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import ViTMAEConfig, ViTMAEForPreTraining


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``[P] -> [P, dim]``: ``[sin(p * w_k) | cos(p * w_k)]`` with ``w_k = 10000^(-k / (dim / 2))``."""
    if dim % 2:
        raise ValueError(f"1-D sin-cos needs an even dimension, got {dim}")
    k = torch.arange(dim // 2, dtype=torch.float64)
    omega = 1.0 / 10000 ** (k / (dim / 2))
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d_table(grid_size: int, dim: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position table ``[grid_size**2 (+1), dim]`` in MAE's layout.

    Row ``i * grid_size + j`` is the patch in row i, column j. MAE's released weights put the
    column (width) code in the first half and the row code in the second half of each vector;
    transformers keeps that layout for compatibility, and so do we. The cls row is zero.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos needs a dimension divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    table = torch.cat([sincos_1d(cols.reshape(-1), dim // 2), sincos_1d(rows.reshape(-1), dim // 2)], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=table.dtype), table], dim=0)
    return table.float()


def _grid_size(num_patches: int) -> int:
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f"MAE expects a square patch grid, got {num_patches} patches")
    return grid


@torch.no_grad()
def init_mae_weights(model: ViTMAEForPreTraining, xavier_linear: bool = True) -> ViTMAEForPreTraining:
    """Re-initialise what transformers 5.x leaves zero, in place, and return ``model``.

    ``xavier_linear`` also re-draws every ``nn.Linear`` as xavier-uniform with zero bias, as MAE does
    (transformers draws N(0, 0.02)).
    """
    config = model.config
    embeddings = model.vit.embeddings
    grid = _grid_size(embeddings.patch_embeddings.num_patches)
    std = config.initializer_range

    if xavier_linear:
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    # MAE initialises the patch projection like nn.Linear rather than nn.Conv2d.
    weight = embeddings.patch_embeddings.projection.weight
    nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
    if embeddings.patch_embeddings.projection.bias is not None:
        nn.init.zeros_(embeddings.patch_embeddings.projection.bias)

    embeddings.position_embeddings.copy_(sincos_2d_table(grid, config.hidden_size)[None])
    embeddings.position_embeddings.requires_grad_(False)
    nn.init.normal_(embeddings.cls_token, std=std)

    decoder = model.decoder
    decoder.decoder_pos_embed.copy_(sincos_2d_table(grid, config.decoder_hidden_size)[None])
    decoder.decoder_pos_embed.requires_grad_(False)
    nn.init.normal_(decoder.mask_token, std=std)
    return model


def build_mae_for_pretraining(config: ViTMAEConfig, xavier_linear: bool = True) -> ViTMAEForPreTraining:
    """``ViTMAEForPreTraining(config)`` with MAE's initialisation (see module docstring)."""
    return init_mae_weights(ViTMAEForPreTraining(config), xavier_linear=xavier_linear)


def identity_noise(batch_size: int, seq_length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``noise [N, L]`` under which ViTMAE's shuffle keeps every token in place (ascending ranks).

    With ``mask_ratio=0`` the encoder then sees the unmasked, unshuffled sequence (NOTES #2).
    """
    return torch.arange(seq_length, dtype=torch.float32, device=device).expand(batch_size, seq_length).contiguous()


def position_tables_are_zero(model: ViTMAEForPreTraining) -> bool:
    """True when the encoder or decoder position table is all zero (the transformers 5.x init bug)."""
    enc = model.vit.embeddings.position_embeddings
    dec = model.decoder.decoder_pos_embed
    return bool(enc.abs().sum() == 0 or dec.abs().sum() == 0)
