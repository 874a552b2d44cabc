"""Import foreign ViT checkpoints (facebookresearch/mae, the seed paper's release, timm) as HF models.

A ``.pth`` holding ``{"model": {...}}`` in timm names (NOTES #19), a plain timm ``vit_*`` state
dict, or a ``.safetensors`` file becomes a saved transformers model with safetensors weights and
an MAE image processor:

- with MAE decoder keys -> ``ViTMAEForPreTraining`` (pretraining can continue);
- without (fine-tuned or timm classifiers, bare encoders) -> ``ViTForImageClassification``.

The architecture is read off the weights; the number of attention heads cannot be, so it comes
from the standard ViT table by width or from ``num_heads``. Pickles are opened with
``weights_only=True`` (``argparse.Namespace`` is allowed too: MAE's ``misc.save_model`` stores its
``args``), the key renames live in :mod:`modeling.models.timm_names`, and the loaded model's missing and
unexpected keys are checked exactly (STYLE #6).

CLI::

    python -m modeling.models.import_checkpoint SRC.pth OUT_DIR [--image_size N] [--labels rafdb|a,b,c] [--num_heads H]
"""

from __future__ import annotations

import argparse
import logging
import math
import pickle
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, ViTConfig, ViTForImageClassification, ViTMAEConfig, ViTMAEForPreTraining

from ..cli import plain_text, run_main
from ..labels import labels_for
from .file_modes import share_like_other_outputs
from .mae_to_vit import HEAD_INIT_STD
from .sizes import image_processor_for, mae_config, vit_config
from .timm_names import check_keys, is_decoder_key, timm_to_hf_vit, timm_to_hf_vitmae

logger = logging.getLogger(__name__)

# Heads by width in the ViT/DeiT tables (Ti 192, S 384, B 768, L 1024, H 1280); weights cannot tell.
HEADS_BY_WIDTH: dict[int, int] = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}
# MAE's decoder is 512 wide with 16 heads (head dim 32); the lighter presets of modeling.models.sizes keep dim 32.
DECODER_HEADS_BY_WIDTH: dict[int, int] = {128: 4, 256: 8, 512: 16}
TARGETS: tuple[str, ...] = ("auto", "mae", "classifier")
_REQUIRED = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight")
_REQUIRED_DECODER = ("mask_token", "decoder_pos_embed", "decoder_embed.weight", "decoder_pred.weight")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth`` (``{"model": ...}``, ``{"state_dict": ...}`` or plain) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[-1]
        raise ValueError(
            f"{path}: refused to unpickle with weights_only=True (it holds objects other than tensors and plain "
            f"containers; only trusted code may load those): {reason}"
        ) from err
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint: {err}") from err
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (or {{'model': state_dict}}), got {type(obj).__name__}")
    not_tensors = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ValueError(f"{path}: entries that are not tensors: {not_tensors[:20]}")
    if obj and all(k.startswith("module.") for k in obj):  # saved from a DistributedDataParallel wrapper
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _count(state_dict: dict[str, torch.Tensor], prefix: str) -> int:
    return len({m.group(1) for k in state_dict if (m := re.match(rf"^{prefix}\.(\d+)\.", k))})


def _heads(width: int, given: int | None, table: dict[int, int], flag: str) -> int:
    if given is not None:
        return given
    if width not in table:
        raise ValueError(f"cannot infer the number of attention heads of a {width}-wide ViT; pass {flag}")
    return table[width]


def infer_architecture(
    state_dict: dict[str, torch.Tensor], num_heads: int | None = None, decoder_num_heads: int | None = None
) -> dict[str, Any]:
    """Config fields read off timm-named weights: encoder, checkpoint image size, head size, decoder if any."""
    missing = [k for k in _REQUIRED if k not in state_dict]
    if missing:
        raise ValueError(f"not a CLS-token ViT state dict: missing {missing}")
    proj = state_dict["patch_embed.proj.weight"]  # [D, C, p, p]
    hidden, channels, patch = proj.shape[0], proj.shape[1], proj.shape[-1]
    if proj.shape[-2] != patch:
        raise ValueError(f"non-square patches {tuple(proj.shape[-2:])} are not supported")
    grid = math.isqrt(state_dict["pos_embed"].shape[1] - 1)
    if grid * grid != state_dict["pos_embed"].shape[1] - 1:
        raise ValueError(f"pos_embed {tuple(state_dict['pos_embed'].shape)} is not a CLS row plus a square grid")
    arch: dict[str, Any] = {
        "hidden_size": hidden,
        "num_hidden_layers": _count(state_dict, "blocks"),
        "num_attention_heads": _heads(hidden, num_heads, HEADS_BY_WIDTH, "num_heads"),
        "intermediate_size": state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        "num_channels": channels,
        "patch_size": patch,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
        "image_size": grid * patch,
        "num_classes": state_dict["head.weight"].shape[0] if "head.weight" in state_dict else None,
        "has_decoder": any(is_decoder_key(k) for k in state_dict),
    }
    if arch["has_decoder"]:
        missing = [k for k in _REQUIRED_DECODER + ("decoder_blocks.0.mlp.fc1.weight",) if k not in state_dict]
        if missing:
            raise ValueError(f"incomplete MAE decoder: missing {missing}")
        width = state_dict["decoder_embed.weight"].shape[0]
        arch.update(
            decoder_hidden_size=width,
            decoder_num_hidden_layers=_count(state_dict, "decoder_blocks"),
            decoder_num_attention_heads=_heads(width, decoder_num_heads, DECODER_HEADS_BY_WIDTH, "decoder_num_heads"),
            decoder_intermediate_size=state_dict["decoder_blocks.0.mlp.fc1.weight"].shape[0],
        )
    return arch


def parse_labels(spec: str | Sequence[str] | None, num_classes: int | None = None) -> list[str] | None:
    """``rafdb`` / ``ferplus`` / ``affectnet[-7|-8]`` / ``"a,b,c"`` / a list -> class names (None stays None).

    Plain ``affectnet`` picks the 7- or 8-class order by ``num_classes`` (8 when unknown).
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if not isinstance(spec, str):
        return [str(n) for n in spec]
    key = spec.strip().lower()
    if key in ("affectnet-7", "affectnet7"):
        return list(labels_for("affectnet", "7"))
    if key in ("affectnet", "affectnet-8", "affectnet8"):
        return list(labels_for("affectnet", "7" if key == "affectnet" and num_classes == 7 else "8"))
    if "," not in key:
        return list(labels_for(key))  # raises on an unknown dataset name
    return [n.strip() for n in spec.split(",") if n.strip()]


def _check_load(model: nn.Module, hf_state: dict[str, torch.Tensor], expected_missing: set[str]) -> None:
    result = model.load_state_dict(hf_state, strict=False)
    missing, unexpected = set(result.missing_keys), set(result.unexpected_keys)
    if missing != expected_missing or unexpected:
        raise RuntimeError(
            f"checkpoint import into {type(model).__name__}: missing={sorted(missing ^ expected_missing)}, "
            f"unexpected={sorted(unexpected)}"
        )


def convert_state_dict(
    state_dict: dict[str, torch.Tensor],
    image_size: int | None = None,
    labels: str | Sequence[str] | None = None,
    num_heads: int | None = None,
    decoder_num_heads: int | None = None,
    target: str = "auto",
    norm_pix_loss: bool = True,
) -> ViTMAEForPreTraining | ViTForImageClassification:
    """timm-named weights -> a loaded ``ViTMAEForPreTraining`` (decoder present, target auto/mae) or classifier."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    check_keys(state_dict)
    arch = infer_architecture(state_dict, num_heads, decoder_num_heads)
    image_size = image_size or arch["image_size"]
    encoder = {k: arch[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    encoder.update(num_channels=arch["num_channels"], qkv_bias=arch["qkv_bias"])
    if target == "mae" and not arch["has_decoder"]:
        raise ValueError("target 'mae' needs MAE decoder keys (decoder_embed, decoder_blocks, ...); none found")

    if arch["has_decoder"] and target != "classifier":
        if labels is not None:
            logger.warning("labels are ignored for ViTMAEForPreTraining; use target='classifier' for a classifier")
        decoder = {k: v for k, v in arch.items() if k.startswith("decoder_")}
        config = mae_config("base", image_size, arch["patch_size"], norm_pix_loss=norm_pix_loss, **encoder, **decoder)
        model = ViTMAEForPreTraining(config)
        _check_load(model, timm_to_hf_vitmae(state_dict, config), set())
        return model.eval()

    names = parse_labels(labels, arch["num_classes"])
    if names is None and arch["num_classes"] is None:
        raise ValueError("the checkpoint has no head.*; give labels (e.g. 'rafdb' or 'a,b,c') for a new classifier")
    names = names or [f"LABEL_{i}" for i in range(arch["num_classes"])]
    state = {k: v for k, v in state_dict.items() if not k.startswith("head.") or arch["num_classes"] == len(names)}
    new_head = arch["num_classes"] != len(names)
    if new_head and arch["num_classes"] is not None:
        logger.warning("Dropped head.* (%d classes) for a new %d-class classifier", arch["num_classes"], len(names))
    config = vit_config("base", image_size, arch["patch_size"], labels=names, **encoder)
    model = ViTForImageClassification(config)
    _check_load(model, timm_to_hf_vit(state, config), {"classifier.weight", "classifier.bias"} if new_head else set())
    if new_head:  # as MAE fine-tuning initialises its head (main_finetune.py)
        with torch.no_grad():
            nn.init.trunc_normal_(model.classifier.weight, std=HEAD_INIT_STD)
            nn.init.zeros_(model.classifier.bias)
    return model.eval()


def describe(config: ViTConfig | ViTMAEConfig) -> str:
    """One line: model class, encoder size, patch/image size, then decoder or labels."""
    c = config
    kind = "ViTMAEForPreTraining" if isinstance(c, ViTMAEConfig) else "ViTForImageClassification"
    text = (
        f"{kind} (width {c.hidden_size}, {c.num_hidden_layers} layers, "
        f"{c.num_attention_heads} heads, patch {c.patch_size}, image {c.image_size}"
    )
    if isinstance(c, ViTMAEConfig):
        return text + f", decoder {c.decoder_hidden_size}x{c.decoder_num_hidden_layers})"
    return text + f", labels {list(c.id2label.values())})"


def convert_checkpoint(
    src: str | Path,
    out_dir: str | Path,
    image_size: int | None = None,
    labels: str | Sequence[str] | None = None,
    num_heads: int | None = None,
    decoder_num_heads: int | None = None,
    target: str = "auto",
    norm_pix_loss: bool = True,
) -> Path:
    """Convert the checkpoint file ``src`` and save model (safetensors) and image processor in ``out_dir``."""
    src, out_dir = Path(src), Path(out_dir)
    state_dict = load_state_dict(src)
    check_keys(state_dict, str(src))
    try:
        model = convert_state_dict(
            state_dict, image_size, labels, num_heads, decoder_num_heads, target=target, norm_pix_loss=norm_pix_loss
        )
    except (ValueError, RuntimeError) as err:  # shape or key mismatches while loading
        raise type(err)(f"{src}: {err}") from err
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    image_processor_for(model.config.image_size).save_pretrained(out_dir)
    share_like_other_outputs(out_dir)  # safetensors writes 0600
    logger.info("Saved %s from %s (%d tensors) to %s", describe(model.config), src, len(state_dict), out_dir)
    return out_dir


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m modeling.models.import_checkpoint", description=plain_text(__doc__.split("\n\n")[0])
    )
    parser.add_argument("src", help="checkpoint: .pth ({'model': ...} or plain state dict) or .safetensors")
    parser.add_argument("out_dir", help="directory for the transformers model and image processor")
    parser.add_argument("--image_size", type=int, default=None, help="target image size (default: checkpoint's)")
    parser.add_argument("--labels", default=None, help="rafdb | affectnet[-7|-8] | ferplus | comma,separated,names")
    parser.add_argument("--num_heads", type=int, default=None, help="encoder heads (default: ViT table by width)")
    parser.add_argument(
        "--decoder_num_heads",
        type=int,
        default=None,
        help="MAE decoder heads (default: width / 32 for widths 128, 256, 512)",
    )
    parser.add_argument("--target", choices=TARGETS, default="auto", help="auto: MAE if decoder keys exist")
    parser.add_argument("--no_norm_pix_loss", action="store_true", help="MAE config: plain-pixel loss")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = convert_checkpoint(
        args.src,
        args.out_dir,
        image_size=args.image_size,
        labels=args.labels,
        num_heads=args.num_heads,
        decoder_num_heads=args.decoder_num_heads,
        target=args.target,
        norm_pix_loss=not args.no_norm_pix_loss,
    )
    print(f"Converted {args.src} -> {out}: {describe(AutoConfig.from_pretrained(out))}")
    return out


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m modeling.models.import_checkpoint"))
