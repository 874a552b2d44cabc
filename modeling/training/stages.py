"""Stages that ``run_mae.py`` and ``run_finetune.py`` share: logging, the last checkpoint, the learning rate.

Kept here so the two scripts stay the transformers example shape (arguments, stages in ``main()``) without
repeating each other.
"""

from __future__ import annotations

import logging
import os
import sys

from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from ..cli import plain_text
from .pretraining import absolute_learning_rate, warmup_fraction
from .recipes import ScriptArgumentParser

logger = logging.getLogger(__name__)

# The --optim values both scripts take: FERTrainer builds torch AdamW over layer-decayed parameter groups
# (trainer.adamw_implementation), and MAE pretrains with AdamW, betas (0.9, 0.95) (NOTES #16).
ADAMW_OPTIMS = ("adamw_torch_fused", "adamw_torch")
OPTIM_HELP = "AdamW: adamw_torch_fused (fused kernels; default) or adamw_torch (torch's default loop)"


def narrow_optim(parser) -> None:
    """``--optim`` limited to :data:`ADAMW_OPTIMS` in the parser's help and checks: the Trainer lists some 40
    optimizers, and any other one ended in a traceback (issue 28)."""
    parser.narrow("optim", ADAMW_OPTIMS, OPTIM_HELP)


def script_parser(dataclass_types: tuple, prog: str, doc: str) -> ScriptArgumentParser:
    """A training script's arguments: a short usage naming the JSON recipe, ``doc`` (the script's docstring) as the
    description, its own argument groups before the Trainer's, and ``--optim`` narrowed (:func:`narrow_optim`)."""
    parser = ScriptArgumentParser(
        dataclass_types,
        prog=prog,
        usage="%(prog)s RECIPE.json [--flag value ...]\n       %(prog)s --flag value ...",
        description=plain_text(doc),
    )
    narrow_optim(parser)
    return parser


def setup_logging(training_args: TrainingArguments, *names: str) -> None:
    """Log to stdout at the Trainer's per-process level, for ``modeling``, the given loggers and the HF libraries."""
    import datasets
    import transformers

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    for name in ("modeling", *names):
        logging.getLogger(name).setLevel(level)
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.set_verbosity(level)


def last_checkpoint(training_args: TrainingArguments) -> str | None:
    """The newest ``checkpoint-N`` of ``output_dir`` when training; the run resumes from it."""
    if not (training_args.do_train and os.path.isdir(training_args.output_dir)):
        return None
    found = get_last_checkpoint(training_args.output_dir)
    if found is not None and training_args.resume_from_checkpoint is None:
        logger.info("Found checkpoint %s: resuming from it", found)
    return found


def scale_learning_rate(training_args: TrainingArguments) -> int:
    """Sets the absolute lr from ``base_learning_rate`` and the total batch (MAE's rule) and the warmup
    fraction from ``warmup_epochs``; returns the total batch size."""
    total_batch = (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size
    )
    training_args.learning_rate = absolute_learning_rate(training_args.base_learning_rate, total_batch)
    if training_args.warmup_epochs and training_args.max_steps <= 0:
        training_args.warmup_steps = warmup_fraction(training_args.warmup_epochs, training_args.num_train_epochs)
    logger.info(
        "lr = %.3g x %d / 256 = %.4g; warmup %.3g of training",
        training_args.base_learning_rate,
        total_batch,
        training_args.learning_rate,
        training_args.warmup_steps,
    )
    return total_batch
