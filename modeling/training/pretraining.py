"""The pieces of MAE pretraining that plug into the Trainer: data, collator, trainer, callback.

Pure parts (the lr rule, the warmup fraction) are plain functions; ``MAETrainer`` overrides only
the weight-decay exclusions and makes the held-out loss use the same masks at every evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import Trainer, TrainerCallback

from ..evaluation.reconstruction import reconstruction_grid
from .checkpoints import ExactCheckpointLoading
from .pixels import NormalizeOnDevice

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Names of parameters MAE excludes from weight decay besides norms and biases
# (facebookresearch/mae util/misc.py add_weight_decay / timm no_weight_decay: cls, pos, mask tokens).
NO_DECAY_TOKENS = ("cls_token", "mask_token", "position_embeddings", "pos_embed")


def absolute_learning_rate(base_learning_rate: float, total_batch_size: int) -> float:
    """MAE's linear scaling rule: ``lr = blr * total_batch / 256`` (He et al. 2022, main_pretrain.py)."""
    return base_learning_rate * total_batch_size / 256


def warmup_fraction(warmup_epochs: float, num_train_epochs: float) -> float:
    """Warmup as the fraction of training the Trainer's ``warmup_steps < 1`` expects."""
    if warmup_epochs <= 0:
        return 0.0
    if warmup_epochs >= num_train_epochs:
        raise ValueError(f"warmup_epochs ({warmup_epochs}) must be smaller than num_train_epochs ({num_train_epochs})")
    return warmup_epochs / num_train_epochs


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    """Norm weights, biases (1-D tensors) and cls/mask/position tokens get no weight decay."""
    return param.ndim <= 1 or name.endswith(".bias") or any(t in name for t in NO_DECAY_TOKENS)


def stream_image_files(data_dirs: Sequence[str | Path]) -> datasets.IterableDataset:
    """An ``IterableDataset`` of ``{"image": PIL.Image}`` over every image file under ``data_dirs``.

    For face sets too large to prepare up front: nothing is decoded before it is used. The list of
    files is sorted so that the stream (before shuffling) is the same on every process.
    """
    files: list[str] = []
    for data_dir in data_dirs:
        root = Path(data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a directory; --streaming reads the image files found under it")
        files.extend(str(p) for p in sorted(root.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"No image files ({', '.join(IMAGE_SUFFIXES)}) under {list(map(str, data_dirs))}")
    logger.info("Streaming %d image files from %s", len(files), list(map(str, data_dirs)))

    def generate(shard_files: list[str]) -> Iterator[dict[str, Any]]:
        for path in shard_files:
            yield {"image": {"path": path, "bytes": None}}

    features = datasets.Features({"image": datasets.Image()})
    return datasets.IterableDataset.from_generator(generate, gen_kwargs={"shard_files": files}, features=features)


def collate_pixels(examples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``{"pixel_values": [N, 3, H, W]}``; labels, if any, are not passed to the MAE."""
    return {"pixel_values": torch.stack([e["pixel_values"] for e in examples])}


class MAETrainer(ExactCheckpointLoading, NormalizeOnDevice, Trainer):
    """Trainer for ``ViTMAEForPreTraining``.

    - no weight decay on norms, biases, cls/mask tokens and position tables (MAE recipe, NOTES #16);
    - evaluation reports the reconstruction loss (ViTMAE has no labels, so the Trainer would skip it);
    - ``evaluate`` draws its masks from a fixed seed, so held-out losses of different checkpoints
      are measured on the same masked inputs and can be compared;
    - uint8 batches (``PixelCollator(on_device=True)``) are normalised on the device;
    - resume and best-model restore load every tensor of the checkpoint, or fail (``ExactCheckpointLoading``).
    """

    def __init__(self, *args: Any, eval_mask_seed: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.eval_mask_seed = eval_mask_seed

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        return [n for n, p in model.named_parameters() if not is_no_decay(n, p)]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # ViTMAE returns its loss without labels; the Trainer would otherwise skip eval_loss.
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs).detach()
        return loss, None, None

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.eval_mask_seed)
            return super().evaluate(*args, **kwargs)


class ReconstructionCallback(TrainerCallback):
    """Writes ``reconstructions.png`` (original | masked | reconstruction) into every checkpoint and the output dir."""

    def __init__(self, pixel_values: torch.Tensor, mean: Sequence[float], std: Sequence[float], seed: int = 0):
        self.pixel_values = pixel_values
        self.mean, self.std, self.seed = list(mean), list(std), seed

    def write(self, model: torch.nn.Module, directory: str | Path) -> Path:
        path = Path(directory) / "reconstructions.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        reconstruction_grid(model, self.pixel_values, self.mean, self.std, seed=self.seed).save(path)
        return path

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            self.write(_unwrap(model), checkpoint if checkpoint.is_dir() else args.output_dir)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None:
            self.write(_unwrap(model), args.output_dir)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)
