"""Tiny in-process model configs shared by the tests (hidden 32, 2 layers, image 32, patch 8)."""

from __future__ import annotations

from modeling.models.sizes import mae_config, vit_config

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TINY_DECODER = {
    "decoder_hidden_size": 16,
    "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 32,
}


def tiny_mae_config(image_size: int = 32, patch_size: int = 8, **overrides):
    return mae_config("tiny", image_size=image_size, patch_size=patch_size, **{**TINY, **TINY_DECODER, **overrides})


def tiny_vit_config(labels, image_size: int = 32, patch_size: int = 8, **overrides):
    return vit_config("tiny", image_size=image_size, patch_size=patch_size, labels=labels, **{**TINY, **overrides})


def to_argv(args: dict) -> list[str]:
    """``{"k": v}`` -> ``["--k", "v"]`` for a script's ``main(argv)``; booleans as ``true``/``false``."""
    argv = []
    for k, v in args.items():
        argv += [f"--{k}", str(v).lower() if isinstance(v, bool) else str(v)]
    return argv
