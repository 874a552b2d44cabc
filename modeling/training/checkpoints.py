"""Exact checkpoint loading for the Trainer: resume and best-model restore load every tensor, or fail.

transformers 5.x saves ViT and ViTMAE weights under their legacy names
(``vit.encoder.layer.N.attention.attention.query.weight``) while the modules in memory use the new ones
(``vit.layers.N.attention.q_proj.weight``); ``from_pretrained`` renames them through the model's conversion
mapping, but ``Trainer._load_from_checkpoint`` and ``Trainer._load_best_model`` call
``model.load_state_dict(state_dict, False)`` on the raw file, which skips every encoder layer with only a
warning (transformers issues #43701, #48805). A resumed run then continues from the initial encoder, and the
"best" model is the last checkpoint's encoder with the selected checkpoint's embeddings and head.

Here the checkpoint's keys go through the same renaming ``from_pretrained`` uses
(:func:`model_state_dict_from_checkpoint`, pure), the key sets must match exactly (apart from the keys the
model class declares optional), and :class:`ExactCheckpointLoading`, a mixin of ``FERTrainer`` and
``MAETrainer``, plugs it into both Trainer hooks. peft models load their adapter file, again strictly.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"
ADAPTER_SAFE_WEIGHTS = "adapter_model.safetensors"
ADAPTER_TORCH_WEIGHTS = "adapter_model.bin"


class CheckpointMismatchError(RuntimeError):
    """A checkpoint whose tensors do not match the model's, key for key and shape for shape."""


def weights_file(path: str | Path) -> Path:
    """``path`` itself, or the weights file of the checkpoint directory ``path``."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in (SAFE_WEIGHTS, SAFE_INDEX, TORCH_WEIGHTS):
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path}: no {SAFE_WEIGHTS}, {SAFE_INDEX} or {TORCH_WEIGHTS} in this checkpoint")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safetensors, or a torch pickle read with ``weights_only=True``) or of a
    checkpoint directory (``model.safetensors``, its sharded index, or ``pytorch_model.bin``)."""
    from safetensors.torch import load_file

    path = weights_file(path)
    if path.name.endswith(".index.json"):
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(path.parent / shard, device="cpu"))
        return state
    if path.suffix == ".safetensors":
        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_state_dict_from_checkpoint(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` with its keys renamed the way ``from_pretrained`` renames them for ``model`` (legacy
    ViT names -> transformers 5.x module names); keys that need no renaming pass through.

    Only renamings are applied: a checkpoint that needs a tensor conversion (split, merge) is refused.
    """
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    conversions = get_model_conversion_mapping(model) if hasattr(model, "config") else []
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    expected = model.state_dict()
    prefix = getattr(model, "base_model_prefix", None)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        new_key, converter = rename_source_key(key, renamings, converters, prefix, expected)
        if converter is not None:
            raise CheckpointMismatchError(
                f"checkpoint key {key!r} needs a tensor conversion ({converter}); load it with from_pretrained"
            )
        if new_key in out:
            raise CheckpointMismatchError(f"two checkpoint keys map to {new_key!r} (the second is {key!r})")
        out[new_key] = tensor
    return out


def optional_keys(model: nn.Module) -> list[str]:
    """Patterns of state-dict keys the model class declares it may lack or carry (``_keys_to_ignore_on_load_*``)."""
    patterns: list[str] = []
    for attr in ("_keys_to_ignore_on_load_missing", "_keys_to_ignore_on_load_unexpected"):
        patterns.extend(getattr(model, attr, None) or [])
    return patterns


def check_keys(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """Raise :class:`CheckpointMismatchError` naming ``source`` unless ``state_dict`` has exactly the model's
    tensors (keys and shapes), apart from the keys the model declares optional."""
    expected = model.state_dict()
    ignore = [re.compile(p) for p in optional_keys(model)]

    def relevant(keys):
        return sorted(k for k in keys if not any(p.search(k) for p in ignore))

    missing = relevant(set(expected) - set(state_dict))
    unexpected = relevant(set(state_dict) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                parts.append(f"{len(keys)} {what} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})")
        raise CheckpointMismatchError(f"{source}: the checkpoint does not match the model: {'; '.join(parts)}")


def load_checkpoint_weights(model: nn.Module, checkpoint: str | Path) -> None:
    """Load every tensor of ``checkpoint`` (a directory) into ``model`` in place, or raise.

    A peft model loads its adapter file (``adapter_model.safetensors``): every saved adapter tensor must
    match one of the model's, and the file must hold all of them (the trainable weights and the
    ``modules_to_save`` copies); the frozen base weights are the ones the run started from.
    """
    checkpoint = Path(checkpoint)
    if _is_peft_model(model):
        _load_adapter_strictly(model, checkpoint)
        return
    path = weights_file(checkpoint)
    state_dict = model_state_dict_from_checkpoint(model, read_state_dict(path))
    check_keys(model, state_dict, path)
    model.load_state_dict(state_dict, strict=False)  # keys already checked; optional ones may be absent
    logger.info("Loaded all %d tensors of %s", len(state_dict), path)


def _is_peft_model(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def _load_adapter_strictly(model: nn.Module, checkpoint: Path) -> None:
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    for name in (ADAPTER_SAFE_WEIGHTS, ADAPTER_TORCH_WEIGHTS):
        if (checkpoint / name).is_file():
            path = checkpoint / name
            break
    else:
        raise FileNotFoundError(f"{checkpoint}: no {ADAPTER_SAFE_WEIGHTS} or {ADAPTER_TORCH_WEIGHTS}")
    saved = read_state_dict(path)
    adapter = model.active_adapter
    wanted = get_peft_model_state_dict(model, adapter_name=adapter)
    missing, unexpected = sorted(set(wanted) - set(saved)), sorted(set(saved) - set(wanted))
    shapes = [k for k in set(saved) & set(wanted) if saved[k].shape != wanted[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"{path}: the adapter does not match the model: missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"wrong shape {sorted(shapes)[:4]}"
        )
    result = set_peft_model_state_dict(model, saved, adapter_name=adapter)
    if result.unexpected_keys:
        raise CheckpointMismatchError(f"{path}: peft left adapter tensors unused: {result.unexpected_keys[:4]}")
    logger.info("Loaded all %d adapter tensors of %s", len(saved), path)


class ExactCheckpointLoading:
    """Trainer mixin: resume (``resume_from_checkpoint``) and ``load_best_model_at_end`` load every tensor of the
    checkpoint through the model's key renaming, strictly. DeepSpeed, FSDP and SageMaker checkpoints keep the
    Trainer's own loaders (their files are not a plain state dict)."""

    def _uses_plain_checkpoints(self) -> bool:
        from transformers.utils import is_sagemaker_mp_enabled

        return not (self.is_deepspeed_enabled or self.is_fsdp_enabled or is_sagemaker_mp_enabled())

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        if not self._uses_plain_checkpoints():
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        # The Trainer may pass the wrapped model (DDP); the weights live in the unwrapped one.
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        logger.info("Resuming the weights of %s", resume_from_checkpoint)
        load_checkpoint_weights(target, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        if not self._uses_plain_checkpoints():
            return super()._load_best_model()
        best = self.state.best_model_checkpoint
        logger.info(
            "Loading the best model from %s (%s = %s)", best, self.args.metric_for_best_model, self.state.best_metric
        )
        load_checkpoint_weights(self.accelerator.unwrap_model(self.model), best)
