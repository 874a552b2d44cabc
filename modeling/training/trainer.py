"""``FERTrainer``: the Trainer glue for fine-tuning; it overrides only the sampler, the optimizer, the loss and
the last step of input preparation.

Each override calls a pure helper tested on its own:

- sampler: :class:`~modeling.training.sampling.EpochSeededWeightedSampler` over ``sample_weights`` (from
  :func:`~modeling.training.sampling.class_weights`), seeded from ``args.data_seed`` or ``args.seed``; the Trainer
  advances its epoch through accelerate's ``DataLoaderShard.set_epoch`` (NOTES #6);
- optimizer: torch AdamW over :func:`~modeling.training.lr_decay.param_groups` (layer-wise lr decay, no weight decay
  on norms, biases, cls/position tokens) with ``args.learning_rate`` as the absolute top-layer lr and
  ``args.adam_beta1/2``, ``args.adam_epsilon``, ``args.weight_decay``, fused as ``args.optim`` asks (default);
  ``layer_decay=None`` means 1 (no decay);
- loss: soft-target cross-entropy when the labels are float ``[N, C]`` distributions (mixup/cutmix, FER+
  vote probabilities; the Trainer's default would be BCE, NOTES #8), else cross-entropy with label smoothing;
  with a ``teacher``, mixed with the distillation term of :func:`~modeling.training.losses.distillation_loss`
  on the same (augmented, mixed) training batch the student sees;
- inputs: uint8 batches (``PixelCollator(on_device=True)``) are normalised on the device
  (:class:`~modeling.training.pixels.NormalizeOnDevice`);
- checkpoints: resume and best-model restore load every tensor through the model's key renaming, or fail
  (:class:`~modeling.training.checkpoints.ExactCheckpointLoading`).

Mixup/cutmix runs inside ``compute_loss`` on the device batch, in training mode only, so evaluation and
prediction always see clean images and the integer labels the metrics need. Label smoothing of the
integer-label path is applied in training only (the eval loss is plain cross-entropy); with mixup the
:class:`~modeling.training.transforms.MixupCutmix` object does its own smoothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from .checkpoints import ExactCheckpointLoading
from .losses import distillation_loss, soft_target_cross_entropy
from .lr_decay import param_groups
from .pixels import NormalizeOnDevice
from .sampling import EpochSeededWeightedSampler
from .transforms import MixupCutmix

logger = logging.getLogger(__name__)


def adamw_implementation(optim: str) -> dict[str, bool]:
    """torch AdamW keyword arguments for ``TrainingArguments.optim``: ``adamw_torch_fused`` (the Trainer's default)
    -> ``fused=True``, as the plain Trainer builds it (one kernel per parameter group; torch's CPU default would be the
    per-tensor loop); ``adamw_torch`` -> torch's default. Other optimizers do not take the layer-decay groups."""
    optim = getattr(optim, "value", optim)
    if optim == "adamw_torch_fused":
        return {"fused": True}
    if optim == "adamw_torch":
        return {}
    raise ValueError(
        f"FERTrainer builds torch AdamW over layer-decayed parameter groups; --optim must be adamw_torch_fused "
        f"(default) or adamw_torch, got {optim!r}"
    )


class FERTrainer(ExactCheckpointLoading, NormalizeOnDevice, Trainer):
    """A ``transformers.Trainer`` with a weighted sampler, layer-decayed AdamW and soft-target loss.

    Extra keyword arguments: ``sample_weights`` (``[len(train_dataset)]``, None for the default random
    sampler), ``layer_decay`` (e.g. 0.65; None for no decay), ``label_smoothing`` (integer-label path),
    ``mixup`` (a :class:`MixupCutmix`, applied to training batches), ``teacher`` (a frozen module mapping
    ``pixel_values`` to logits, e.g. :class:`~modeling.models.teacher.FaceResNet`) with ``distillation_alpha``,
    ``distillation_temperature`` and ``hard_distillation`` (training batches only; evaluation scores the student).
    """

    # compute_loss returns a per-batch mean: let training_step divide it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        sample_weights: Sequence[float] | np.ndarray | None = None,
        layer_decay: float | None = None,
        label_smoothing: float = 0.0,
        mixup: MixupCutmix | None = None,
        teacher: nn.Module | None = None,
        distillation_alpha: float = 0.5,
        distillation_temperature: float = 1.0,
        hard_distillation: bool = False,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.sample_weights = sample_weights
        self.layer_decay = layer_decay
        self.label_smoothing = label_smoothing or self.args.label_smoothing_factor
        self.mixup = mixup
        self.teacher = None
        if teacher is not None:
            # Frozen and in eval mode (its batch norms keep their statistics); moved where the student trains.
            self.teacher = teacher.eval().requires_grad_(False).to(self.args.device, memory_format=torch.channels_last)
        self.distillation = {
            "alpha": distillation_alpha,
            "temperature": distillation_temperature,
            "hard": hard_distillation,
        }

    def _get_train_sampler(self, train_dataset=None) -> torch.utils.data.Sampler | None:
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        train_dataset = self.train_dataset if train_dataset is None else train_dataset
        if len(self.sample_weights) != len(train_dataset):
            raise ValueError(
                f"sample_weights has {len(self.sample_weights)} entries but the train dataset has {len(train_dataset)}"
            )
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSeededWeightedSampler(self.sample_weights, num_samples=len(train_dataset), seed=seed)

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            num_layers = self.accelerator.unwrap_model(self.model).config.num_hidden_layers
            groups = param_groups(
                opt_model,
                weight_decay=self.args.weight_decay,
                layer_decay=1.0 if self.layer_decay is None else self.layer_decay,
                base_lr=self.args.learning_rate,
                num_layers=num_layers,
            )
            self.optimizer = torch.optim.AdamW(
                groups,
                lr=self.args.learning_rate,
                betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
                **adamw_implementation(self.args.optim),
            )
        # The parent sees the optimizer set and only adds its distributed wrappers, if any.
        return super().create_optimizer(model)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        if labels is None:
            raise ValueError("FERTrainer.compute_loss needs `labels` in the batch")
        if model.training and self.mixup is not None:
            inputs["pixel_values"], labels = self.mixup(inputs["pixel_values"], labels)
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if model.training and self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(inputs["pixel_values"].contiguous(memory_format=torch.channels_last))
            loss = distillation_loss(
                logits, labels, teacher_logits, label_smoothing=self.label_smoothing, **self.distillation
            )
        elif labels.is_floating_point():
            if labels.shape != logits.shape:
                raise ValueError(f"soft labels {tuple(labels.shape)} do not match logits {tuple(logits.shape)}")
            loss = soft_target_cross_entropy(logits, labels)
        else:
            smoothing = self.label_smoothing if model.training else 0.0
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
        return (loss, outputs) if return_outputs else loss
