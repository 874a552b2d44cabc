#!/usr/bin/env python
"""MAE pretraining of a vanilla ViT on face images, labels unused.

Give a JSON recipe from configs/ as the first argument; flags after it override the recipe's values. Without a
recipe, flags alone (every option below has a default):

    python run_mae.py configs/mae_vit_tiny_ferplus_cpu.json --data_dir /data/FERPlus
    python run_mae.py --dataset_name ferplus --data_dir /data/FERPlus --model_size base --output_dir outputs/mae ...
    torchrun --nproc_per_node 8 run_mae.py configs/mae_vit_base_affectnet.json

The recipe defaults follow MAE (He et al. 2022, facebookresearch/mae main_pretrain.py): mask ratio 0.75,
base lr 1.5e-4 scaled by total batch / 256, AdamW betas (0.9, 0.95), weight decay 0.05 (none on norms,
biases, tokens), warmup then cosine, RandomResizedCrop (0.2, 1) + flip. Li (2022) pretrained ViT-B this way
for 300 epochs on 269,316 AffectNet faces, without norm_pix_loss. The output folder is what ``run_finetune.py
--model_name_or_path`` takes. The options: this script's (model, data, training) first, then the Trainer's.
"""

from __future__ import annotations

import sys

from modeling.cli import check_model_argument

if __name__ == "__main__":  # a missing local model fails now, not after torch and transformers load (modeling/cli.py)
    check_model_argument(sys.argv[1:], "model_name_or_path", "run_mae.py")

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import transformers
from transformers import TrainingArguments, ViTMAEForPreTraining

from modeling.cli import end_distributed, require_dir, require_model, run_main
from modeling.models.file_modes import share_like_other_outputs
from modeling.models.mae import build_mae_for_pretraining, position_tables_are_zero
from modeling.models.sizes import MODEL_SIZES, image_processor_for, mae_config
from modeling.precision import apply_training_precision
from modeling.training.pretraining import (
    MAETrainer,
    ReconstructionCallback,
    collate_pixels,
    stream_image_files,
)
from modeling.training.recipes import ScriptArgumentParser, parse_overrides, parse_script_args
from modeling.training.stages import last_checkpoint, scale_learning_rate, script_parser, setup_logging

logger = logging.getLogger(__name__)

DATASET_NAMES = ("rafdb", "affectnet", "ferplus", "imagefolder")


@dataclass
class DataTrainingArguments:
    _argument_group_name = "Data"

    dataset_name: str = field(
        default="ferplus",
        metadata={"help": f"One or more of {DATASET_NAMES}, comma-separated; their train splits are concatenated."},
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "The official download folder of each dataset, comma-separated, same order."}
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Builder config (e.g. 'original' for RAF-DB, '7' for AffectNet)."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where prepared datasets are cached."})
    train_val_split: float = field(
        default=0.02, metadata={"help": "Fraction of the faces held out to measure the reconstruction loss."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training faces (debugging)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the held-out faces."})
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read image files under each --data_dir lazily instead of preparing a dataset (needs max_steps)."
        },
    )
    shuffle_buffer_size: int = field(default=10_000, metadata={"help": "Shuffle buffer of --streaming."})
    num_reconstructions: int = field(default=6, metadata={"help": "Held-out faces in reconstructions.png."})
    fast_input: bool = field(
        default=True,
        metadata={"help": "Crop uint8 faces at source size, normalise late (modeling/training/fast_input.py)."},
    )
    normalize_on_device: bool | None = field(
        default=None,
        metadata={
            "help": "With --fast_input: hand uint8 batches to the trainer, which normalises (and erases) them on the "
            "training device; default: yes on an accelerator, no on CPU (the loader normalises)."
        },
    )

    def __post_init__(self):
        self.dataset_names = [n.strip() for n in self.dataset_name.split(",") if n.strip()]
        unknown = [n for n in self.dataset_names if n not in DATASET_NAMES]
        if unknown:
            raise ValueError(f"Unknown dataset_name {unknown}; choose from {DATASET_NAMES}")
        if self.data_dir is None:
            raise ValueError("--data_dir is required (the folder of the official download)")
        self.data_dirs = [d.strip() for d in self.data_dir.split(",")]
        if len(self.data_dirs) != len(self.dataset_names):
            raise ValueError(f"{len(self.dataset_names)} dataset names but {len(self.data_dirs)} data dirs")
        if not 0.0 <= self.train_val_split < 1.0:
            raise ValueError(f"train_val_split must be in [0, 1), got {self.train_val_split}")


@dataclass
class ModelArguments:
    _argument_group_name = "Model"

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Start from an HF ViTMAE checkpoint (local dir or Hub id, e.g. facebook/vit-mae-base) or an "
            "official MAE .pth; otherwise a --model_size model is built from scratch."
        },
    )
    model_size: str = field(default="base", metadata={"help": f"Preset for from-scratch models: {MODEL_SIZES}."})
    image_size: int = field(default=224, metadata={"help": "Input resolution."})
    patch_size: int = field(default=16, metadata={"help": "Patch size."})
    mask_ratio: float = field(default=0.75, metadata={"help": "Fraction of patches removed (MAE: 0.75)."})
    norm_pix_loss: bool = field(
        default=True, metadata={"help": "Per-patch normalised targets (MAE); the seed paper's release had it off."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Override preset fields, e.g. 'num_hidden_layers=6,decoder_hidden_size=128'."},
    )

    def __post_init__(self):
        if self.model_size not in MODEL_SIZES:
            raise ValueError(f"model_size must be one of {MODEL_SIZES}, got {self.model_size!r}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")


@dataclass
class MAETrainingArguments(TrainingArguments):
    _argument_group_name = "Training (this project's options and recipe defaults)"

    base_learning_rate: float = field(
        default=1.5e-4, metadata={"help": "lr = base_learning_rate * total_batch_size / 256 (MAE)."}
    )
    warmup_epochs: float = field(default=40.0, metadata={"help": "Linear warmup epochs before the cosine decay."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (none on norms/biases/tokens)."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2 (MAE: 0.95)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Scheduler after warmup."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the image column for the transform."})
    cpu_precision: str = field(
        default="auto",
        metadata={
            "help": "On CPU: 'auto' trains in bf16 autocast where the CPU has bf16 units (AMX, AVX512-BF16) and in "
            "float32 elsewhere (emulated bf16 is far slower); 'bf16' or 'fp32' forces one. Accelerators follow --bf16."
        },
    )


def load_faces(data_args: DataTrainingArguments, seed: int):
    """Train and held-out face sets with one ``image`` column, labels dropped."""
    if data_args.streaming:
        stream = stream_image_files(data_args.data_dirs)
        n_eval = data_args.max_eval_samples or 256
        eval_set = datasets.Dataset.from_list(list(stream.take(n_eval)), features=stream.features)
        train = stream.skip(n_eval).shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
        return train, eval_set

    from modeling.data import load_fer_dataset

    parts = []
    for name, data_dir in zip(data_args.dataset_names, data_args.data_dirs):
        splits = load_fer_dataset(name, data_dir, config=data_args.dataset_config_name, cache_dir=data_args.cache_dir)
        # Only the training split: test faces must stay unseen, even without their labels.
        part = splits["train"]
        parts.append(part.select_columns(["image"]))
        logger.info("%s: %d training faces from %s", name, len(part), data_dir)
    faces = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if data_args.train_val_split > 0:
        split = faces.train_test_split(test_size=data_args.train_val_split, seed=seed)
        train, held_out = split["train"], split["test"]
    else:
        train, held_out = faces, None
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if held_out is not None and data_args.max_eval_samples is not None:
        held_out = held_out.select(range(min(data_args.max_eval_samples, len(held_out))))
    return train, held_out


def load_model(model_args: ModelArguments, cache_dir: str | None) -> ViTMAEForPreTraining:
    overrides = parse_overrides(model_args.config_overrides)
    source = model_args.model_name_or_path
    if source is None:
        config = mae_config(
            model_args.model_size,
            image_size=model_args.image_size,
            patch_size=model_args.patch_size,
            mask_ratio=model_args.mask_ratio,
            norm_pix_loss=model_args.norm_pix_loss,
            **overrides,
        )
        logger.info("Building a %s MAE from scratch (MAE init, sin-cos tables restored)", model_args.model_size)
        return build_mae_for_pretraining(config)
    if Path(source).suffix in (".pth", ".pt", ".bin", ".safetensors") and Path(source).is_file():
        from modeling.models.import_checkpoint import convert_checkpoint

        converted = Path(cache_dir or ".") / f"converted-{Path(source).stem}"
        source = str(convert_checkpoint(source, converted, image_size=model_args.image_size))
    model = ViTMAEForPreTraining.from_pretrained(
        source, mask_ratio=model_args.mask_ratio, norm_pix_loss=model_args.norm_pix_loss, **overrides
    )
    if position_tables_are_zero(model):
        raise ValueError(f"{source}: its position tables are all zero (a checkpoint saved from a broken init)")
    return model


def build_parser() -> ScriptArgumentParser:
    """The script's arguments: a short usage, the docstring as description, its own groups before the Trainer's."""
    return script_parser((ModelArguments, DataTrainingArguments, MAETrainingArguments), "run_mae.py", __doc__)


def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments: a JSON recipe as the sole argument (flags after it override), or command-line flags.
    # Mistakes are UsageErrors raised here, before anything heavy (one line from the command line: modeling/cli.py).
    argv = sys.argv[1:] if argv is None else argv
    choices = {"dataset_name": DATASET_NAMES}
    model_args, data_args, training_args = parse_script_args(build_parser(), argv, choices=choices)
    for data_dir in data_args.data_dirs:
        require_dir("--data_dir", data_dir)
    require_model("--model_name_or_path", model_args.model_name_or_path)  # not taken for a Hub id (modeling/cli.py)

    # 2. Logging.
    setup_logging(training_args, __name__)
    precision = apply_training_precision(training_args, training_args.cpu_precision)
    logger.warning("Training precision: %s", precision)
    logger.warning(
        "Process rank %s, device %s, n_gpu %s, distributed %s",
        training_args.process_index,
        training_args.device,
        training_args.n_gpu,
        training_args.parallel_mode.value == "distributed",
    )

    # 3. Last checkpoint.
    checkpoint_found = last_checkpoint(training_args)

    # 4. Seed.
    transformers.set_seed(training_args.seed)

    # 5. Data (prepared once, on the main process first).
    with training_args.main_process_first(desc="prepare faces"):
        train_set, eval_set = load_faces(data_args, training_args.seed)

    n_train = None if data_args.streaming else len(train_set)  # a stream has no length

    # 6. Model.
    model = load_model(model_args, data_args.cache_dir)
    image_size = model.config.image_size
    processor = image_processor_for(image_size)

    # 7. Transforms.
    from modeling.training.transforms import build_eval_transform, build_mae_pretrain_transform

    train_tf = build_mae_pretrain_transform(image_size, processor.image_mean, processor.image_std)
    eval_tf = build_eval_transform(image_size, processor.image_mean, processor.image_std)

    def apply(transform):
        def fn(batch):
            return {"pixel_values": [transform(image) for image in batch["image"]]}

        return fn

    from modeling.training.fast_input import FaceBatchTransform, PixelCollator, undecoded
    from modeling.training.pixels import normalize_on_device

    # Same recipe; uint8 crops at the source size, normalised late: in the collator or on the device (not for
    # --streaming).
    fast = data_args.fast_input and not data_args.streaming
    on_device = normalize_on_device(training_args, data_args.normalize_on_device)
    collator = PixelCollator(processor.image_mean, processor.image_std, on_device) if fast else collate_pixels
    if data_args.streaming:
        train_set = train_set.map(apply(train_tf), batched=True, remove_columns=["image"])
        if training_args.max_steps <= 0:
            raise ValueError("--streaming needs --max_steps (the stream has no length)")
    elif fast:
        train_set = undecoded(train_set).with_transform(FaceBatchTransform(image_size, "mae_pretrain", None))
    else:
        train_set = train_set.with_transform(apply(train_tf))
    if eval_set is not None:
        recon_faces = torch.stack(
            [eval_tf(eval_set[i]["image"]) for i in range(min(data_args.num_reconstructions, len(eval_set)))]
        )
        if fast:
            eval_set = undecoded(eval_set).with_transform(FaceBatchTransform(image_size, "none", None))
        else:
            eval_set = eval_set.with_transform(apply(eval_tf))
    else:
        recon_faces = None

    # 8. Learning rate: lr = base_learning_rate x total batch / 256 (MAE), warmup from epochs.
    total_batch = scale_learning_rate(training_args)

    # 9. Trainer.
    callbacks = []
    if recon_faces is not None:
        callbacks.append(
            ReconstructionCallback(recon_faces, processor.image_mean, processor.image_std, seed=training_args.seed)
        )
    trainer = MAETrainer(
        model=model,
        args=training_args,
        train_dataset=train_set if training_args.do_train else None,
        eval_dataset=eval_set if training_args.do_eval else None,
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
        eval_mask_seed=training_args.seed,
    )

    results: dict = {}
    # 10. Train.
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint or checkpoint_found
        if training_args.do_eval and eval_set is not None:
            start = trainer.evaluate(metric_key_prefix="eval_start")
            trainer.log_metrics("eval_start", start)
            trainer.save_metrics("eval_start", start)
            results.update(start)
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        if trainer.is_world_process_zero():  # safetensors writes 0600; checkpoints too (modeling/models/file_modes.py)
            share_like_other_outputs(training_args.output_dir)
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        results.update(train_result.metrics)

    # 11. Evaluate: held-out reconstruction loss with fixed masks.
    if training_args.do_eval and eval_set is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results.update(metrics)
    run_info = {
        "learning_rate": training_args.learning_rate,
        "total_batch_size": total_batch,
        "train_faces": n_train,
        "held_out_faces": len(eval_set) if eval_set is not None else 0,
        "precision": precision,
    }
    trainer.save_metrics("run", run_info)  # merged into all_results.json with train/eval figures
    results.update(run_info)
    if trainer.is_world_process_zero() and recon_faces is not None and not training_args.do_train:
        callbacks[0].write(model, training_args.output_dir)

    # 12. Hub.
    if training_args.push_to_hub:
        trainer.push_to_hub(
            tags=["mae", "facial-expression-recognition", "vit"], finetuned_from=model_args.model_name_or_path
        )
    return results


if __name__ == "__main__":
    try:
        status = run_main(main, "run_mae.py")
    finally:
        end_distributed()
    sys.exit(status)
