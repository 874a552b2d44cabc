#!/usr/bin/env python
"""Fine-tune a vanilla ViT (from an MAE, a ViT/DeiT checkpoint, or scratch) for facial expression recognition.

Give a JSON recipe from configs/ as the first argument; flags after it override the recipe's values. Without a
recipe, flags alone (every option below has a default):

    python run_finetune.py configs/finetune_vit_tiny_ferplus_cpu.json --data_dir /data/FERPlus
    python run_finetune.py --model_name_or_path outputs/mae_tiny --dataset_name rafdb --data_dir /data/RAF-DB \\
        --augmentation regular --do_train --do_eval --do_predict --output_dir outputs/rafdb
    torchrun --nproc_per_node 8 run_finetune.py configs/finetune_mae_affectnet_vitb_affectnet8.json

``--model_name_or_path``: an MAE (``run_mae.py``'s output), a ViT/DeiT classifier or backbone (a folder or a Hub id
``user/name``) or an official ``.pth``; none trains ``--model_size`` from scratch. Model selection uses the
validation split only; ``--do_predict`` scores the official test split once, with the selected model, and writes
``test_*`` metrics, ``test_predictions.csv`` and a confusion matrix. Recipe defaults follow MAE fine-tuning (He et
al. 2022; NOTES #17) and Li (2022). The options: this script's (model, data, training) first, then the Trainer's.
"""

from __future__ import annotations

import sys

from modeling.cli import check_model_argument

if __name__ == "__main__":  # a missing local model fails now, not after torch and transformers load (modeling/cli.py)
    check_model_argument(sys.argv[1:], "model_name_or_path", "run_finetune.py")

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import TrainingArguments

from modeling.cli import UsageError, end_distributed, require_dir, require_model, run_main
from modeling.evaluation.metrics import dedup_metrics, fer_metrics, make_compute_metrics, scalar_metrics
from modeling.labels import labels_for
from modeling.models.drop_path import enable_drop_path
from modeling.models.file_modes import share_like_other_outputs
from modeling.models.sizes import MODEL_SIZES
from modeling.precision import apply_training_precision
from modeling.training.fast_input import FaceBatchTransform, PixelCollator, fast_transforms, undecoded
from modeling.training.finetuning import (
    add_lora,
    collate_classification,
    load_classifier,
    processor_for,
    select_splits,
    trainable_share,
    write_predictions_csv,
)
from modeling.training.pixels import normalize_on_device
from modeling.training.recipes import ScriptArgumentParser, parse_overrides, parse_script_args
from modeling.training.sampling import SAMPLING_SCHEMES, class_weights
from modeling.training.stages import last_checkpoint, scale_learning_rate, script_parser, setup_logging
from modeling.training.trainer import FERTrainer
from modeling.training.transforms import AUGMENTATIONS, MixupCutmix, build_eval_transform, build_train_transform

logger = logging.getLogger(__name__)


@dataclass
class DataTrainingArguments:
    _argument_group_name = "Data"

    dataset_name: str = field(default="ferplus", metadata={"help": "rafdb, affectnet or ferplus."})
    data_dir: str | None = field(default=None, metadata={"help": "The folder of the official download."})
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "'original' (RAF-DB), '7'/'8' (AffectNet), 'majority'/'probability' (FER+)."}
    )
    eval_dataset_config_name: str | None = field(
        default=None,
        metadata={
            "help": "FER+: the protocol validation and test are scored under when training on another, e.g. train "
            "on 'probability' (the vote distributions) and select and score on 'majority' (published figures)."
        },
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where prepared datasets are cached."})
    validation_split_percentage: float = field(
        default=10.0,
        metadata={
            "help": "Stratified percentage of train held out for model selection where no validation split exists."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set (debugging)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the validation set."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Truncate the test set."})
    augmentation: str = field(default="regular", metadata={"help": f"One of {AUGMENTATIONS}."})
    augmentation_knobs: str | None = field(
        default=None, metadata={"help": "JSON overrides of the augmentation's knobs, e.g. '{\"brightness\": 0.4}'."}
    )
    mixup: float | None = field(default=None, metadata={"help": "Mixup alpha; default 0.8 with 'mae', else off."})
    cutmix: float | None = field(default=None, metadata={"help": "Cutmix alpha; default 1.0 with 'mae', else off."})
    label_smoothing: float | None = field(default=None, metadata={"help": "Default 0.1 with 'mae', else 0."})
    weighted_sampler: str = field(default="none", metadata={"help": f"One of {SAMPLING_SCHEMES}."})
    max_oversampling: float = field(default=3.0, metadata={"help": "Cap of the 'capped' sampler."})
    tta_flip: bool = field(default=False, metadata={"help": "Average predictions over the image and its mirror."})
    logit_adjustment: bool = field(
        default=False,
        metadata={
            "help": "After training, shift the selected model's logits by -tau*log(training class prior), tau chosen "
            "on validation, folded into the classifier bias (modeling/training/logit_adjustment.py): balanced "
            "accuracy up."
        },
    )
    fast_input: bool = field(
        default=True,
        metadata={"help": "Augment uint8 faces at source size, resize last (modeling/training/fast_input.py)."},
    )
    normalize_on_device: bool | None = field(
        default=None,
        metadata={
            "help": "With --fast_input: hand uint8 batches to the trainer, which normalises (and erases) them on the "
            "training device; default: yes on an accelerator, no on CPU (the loader normalises)."
        },
    )

    def __post_init__(self):
        if self.data_dir is None:
            raise ValueError("--data_dir is required (the folder of the official download)")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}")
        if self.weighted_sampler not in SAMPLING_SCHEMES:
            raise ValueError(f"weighted_sampler must be one of {SAMPLING_SCHEMES}, got {self.weighted_sampler!r}")
        self.knobs = json.loads(self.augmentation_knobs) if self.augmentation_knobs else {}
        is_mae = self.augmentation == "mae"
        self.mixup = (0.8 if is_mae else 0.0) if self.mixup is None else self.mixup
        self.cutmix = (1.0 if is_mae else 0.0) if self.cutmix is None else self.cutmix
        self.label_smoothing = (0.1 if is_mae else 0.0) if self.label_smoothing is None else self.label_smoothing


@dataclass
class ModelArguments:
    _argument_group_name = "Model"

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "An MAE (run_mae.py output or Hub id), a ViT/DeiT classifier or backbone (e.g. "
            "google/vit-base-patch16-224-in21k), or an official .pth; none: --model_size from scratch."
        },
    )
    model_size: str = field(default="base", metadata={"help": f"Preset when training from scratch: {MODEL_SIZES}."})
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Input size; default: the checkpoint's (224 from scratch). Another size than a ViT checkpoint's "
            "fine-tunes it there, its position table resampled to the new token grid (e.g. 48 px patch 6 -> 72 px)."
        },
    )
    patch_size: int = field(default=16, metadata={"help": "Patch size when training from scratch."})
    config_overrides: str | None = field(default=None, metadata={"help": "Preset overrides for scratch, 'k=v,...'."})
    drop_path: float = field(
        default=0.1, metadata={"help": "Stochastic depth rate of the last block (training only)."}
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "Attention kernel for training: sdpa or eager (default: transformers' choice, sdpa). On a 2-core "
            "EPYC with bf16 units, eager trained the 72 px FER+ ViT 1.4x faster (bench/RESULTS.md); same arithmetic.",
            "choices": ["sdpa", "eager"],
        },
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank on q_proj/v_proj; 0 fine-tunes every weight."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    save_adapter_only: bool = field(
        default=False, metadata={"help": "With LoRA, save the adapter instead of a merged model."}
    )
    teacher_dir: str | None = field(
        default=None,
        metadata={
            "help": "Distil from this convolutional teacher (python -m modeling.training.teacher output; same "
            "classes, trained on the same faces). A training aid: the saved model stays a plain ViT."
        },
    )
    distillation_alpha: float = field(
        default=0.5, metadata={"help": "With --teacher_dir: weight of the teacher's term in the loss, in [0, 1]."}
    )
    distillation_temperature: float = field(
        default=1.0, metadata={"help": "With --teacher_dir: softmax temperature T of the soft term (scaled by T^2)."}
    )
    hard_distillation: bool = field(
        default=False, metadata={"help": "With --teacher_dir: learn the teacher's argmax instead (DeiT's hard form)."}
    )

    def __post_init__(self):
        if self.model_size not in MODEL_SIZES:
            raise ValueError(f"model_size must be one of {MODEL_SIZES}, got {self.model_size!r}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        if not 0.0 <= self.distillation_alpha <= 1.0:
            raise ValueError(f"distillation_alpha must be in [0, 1], got {self.distillation_alpha}")
        if self.distillation_temperature <= 0:
            raise ValueError(f"distillation_temperature must be > 0, got {self.distillation_temperature}")


@dataclass
class FinetuneTrainingArguments(TrainingArguments):
    _argument_group_name = "Training (this project's options and recipe defaults)"

    base_learning_rate: float = field(default=5e-4, metadata={"help": "lr = base_learning_rate * total_batch / 256."})
    layer_decay: float = field(default=0.65, metadata={"help": "Layer-wise lr decay (MAE: 0.65; 1 disables)."})
    warmup_epochs: float = field(default=5.0, metadata={"help": "Linear warmup epochs before the cosine decay."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (none on norms/biases/tokens)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Scheduler after warmup."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the image column for the transform."})
    metric_for_best_model: str = field(default="accuracy", metadata={"help": "Validation metric for model selection."})
    cpu_precision: str = field(
        default="auto",
        metadata={
            "help": "On CPU: 'auto' trains in bf16 autocast where the CPU has bf16 units (AMX, AVX512-BF16) and in "
            "float32 elsewhere (emulated bf16 is far slower); 'bf16' or 'fp32' forces one. Accelerators follow --bf16."
        },
    )


def build_parser() -> ScriptArgumentParser:
    """The script's arguments: a short usage, the docstring as description, its own groups before the Trainer's."""
    return script_parser(
        (ModelArguments, DataTrainingArguments, FinetuneTrainingArguments), "run_finetune.py", __doc__
    )


def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments: a JSON recipe as the sole argument (flags after it override), or command-line flags. Mistakes
    # are UsageErrors raised here, before anything heavy (one line from the command line: modeling/cli.py).
    from modeling.data import BUILDERS

    argv = sys.argv[1:] if argv is None else argv
    choices = {"dataset_name": sorted(BUILDERS)}
    model_args, data_args, training_args = parse_script_args(build_parser(), argv, choices=choices)
    require_dir("--data_dir", data_args.data_dir)
    require_model("--model_name_or_path", model_args.model_name_or_path)  # not taken for a Hub id (modeling/cli.py)
    if data_args.logit_adjustment and (model_args.save_adapter_only or not training_args.do_train):
        raise UsageError(
            "--logit_adjustment adjusts the model this run trains: it needs --do_train and a merged model"
        )

    # 2. Logging.
    setup_logging(training_args, __name__)
    precision = apply_training_precision(training_args, training_args.cpu_precision)
    logger.warning("Training precision: %s", precision)

    # 3. Last checkpoint.
    checkpoint_found = last_checkpoint(training_args)

    # 4. Seed.
    transformers.set_seed(training_args.seed)

    # 5. Data: train / validation for selection / the official test split.
    from modeling.data import load_fer_dataset

    with training_args.main_process_first(desc="prepare dataset"):
        splits = load_fer_dataset(
            data_args.dataset_name,
            data_args.data_dir,
            config=data_args.dataset_config_name,
            cache_dir=data_args.cache_dir,
        )
    train_set, eval_set, test_set, test_name = select_splits(
        splits, data_args.validation_split_percentage / 100, training_args.seed
    )
    eval_config = data_args.eval_dataset_config_name or data_args.dataset_config_name
    if eval_config != data_args.dataset_config_name:
        # Train under one protocol, select and score under another: the training split stays, validation and
        # test (and the duplicate search below) come from the evaluation protocol's splits.
        with training_args.main_process_first(desc="prepare evaluation dataset"):
            splits = load_fer_dataset(
                data_args.dataset_name, data_args.data_dir, config=eval_config, cache_dir=data_args.cache_dir
            )
        _, eval_set, test_set, test_name = select_splits(
            splits, data_args.validation_split_percentage / 100, training_args.seed
        )
        if eval_set.features["label"].names != train_set.features["label"].names:
            raise UsageError(
                f"--eval_dataset_config_name {eval_config}: its classes {eval_set.features['label'].names} differ "
                f"from the training protocol's {train_set.features['label'].names}"
            )
        logger.info("Training on the %r protocol, scoring on %r", data_args.dataset_config_name, eval_config)
    names = list(train_set.features["label"].names)
    if (
        data_args.dataset_name != "imagefolder"  # its classes are whatever folders the user has
        and tuple(names) != labels_for(data_args.dataset_name, data_args.dataset_config_name)
    ):
        raise RuntimeError(f"Dataset label order {names} differs from the official one")
    for attr, limit in (("train", data_args.max_train_samples), ("eval", data_args.max_eval_samples)):
        if limit is not None:
            ds = train_set if attr == "train" else eval_set
            ds = ds.select(range(min(limit, len(ds))))
            train_set, eval_set = (ds, eval_set) if attr == "train" else (train_set, ds)
    if test_set is not None and data_args.max_predict_samples is not None:
        test_set = test_set.select(range(min(data_args.max_predict_samples, len(test_set))))
    soft_labels = "soft_label" in train_set.column_names  # FER+ 'probability': train on the vote distribution

    # 6. Model.
    model = load_classifier(
        model_args.model_name_or_path,
        names,
        model_size=model_args.model_size,
        image_size=model_args.image_size,
        patch_size=model_args.patch_size,
        work_dir=training_args.output_dir,
        **parse_overrides(model_args.config_overrides),
    )
    if data_args.dataset_name == "ferplus":  # FER2013 faces are gray: fer-predict then converts colour photos too
        model.config.grayscale_input = True
    image_size = model.config.image_size
    processor = processor_for(model_args.model_name_or_path, image_size)
    if model_args.drop_path > 0:
        enable_drop_path(model, model_args.drop_path)
    if model_args.attn_implementation is not None:
        model.set_attn_implementation(model_args.attn_implementation)
    if model_args.lora_r > 0:
        model = add_lora(model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout)
        logger.info("LoRA r=%d: %.2f%% of parameters train", model_args.lora_r, 100 * trainable_share(model))

    # 7. Transforms (grayscale faces come out as 3 channels).
    mean, std = processor.image_mean, processor.image_std
    collator = collate_classification
    fast = fast_transforms(data_args.augmentation, image_size, **data_args.knobs) if data_args.fast_input else None
    if fast is not None:  # same recipe; uint8 at the source size, normalised (and erased) late
        on_device = normalize_on_device(training_args, data_args.normalize_on_device)
        (train_tf, eval_tf), collator = fast, PixelCollator(mean, std, on_device=on_device)
        train_set, eval_set = undecoded(train_set), undecoded(eval_set)
        test_set = undecoded(test_set) if test_set is not None else None
    else:
        train_tf = build_train_transform(data_args.augmentation, image_size, mean, std, **data_args.knobs)
        eval_tf = build_eval_transform(image_size, mean, std)

    def apply(transform, label_column: str = "label", flip: bool = False):
        if isinstance(transform, FaceBatchTransform):
            return transform.with_options(label_column, flip)

        def fn(batch):
            pixels = [transform(image) for image in batch["image"]]
            if flip:
                pixels = [p.flip(-1) for p in pixels]
            return {"pixel_values": pixels, "labels": batch[label_column]}

        return fn

    train_labels = np.asarray(train_set["label"])
    train_targets = None  # the logit adjustment's prior: read only when asked for
    if data_args.logit_adjustment:
        train_targets = np.asarray(train_set["soft_label"]) if soft_labels else train_labels
    train_set = train_set.with_transform(apply(train_tf, "soft_label" if soft_labels else "label"))
    eval_set = eval_set.with_transform(apply(eval_tf))

    # 8. Learning rate (lr = base_learning_rate x total batch / 256, MAE) and the training extras.
    total_batch = scale_learning_rate(training_args)
    sample_weights = None
    if data_args.weighted_sampler != "none":
        sample_weights = class_weights(train_labels, data_args.weighted_sampler, data_args.max_oversampling)
    mixup = None
    if data_args.mixup > 0 or data_args.cutmix > 0:
        mixup = MixupCutmix(
            len(names),
            mixup_alpha=data_args.mixup,
            cutmix_alpha=data_args.cutmix,
            label_smoothing=data_args.label_smoothing,
            seed=training_args.seed + training_args.process_index,
        )

    teacher = None
    if model_args.teacher_dir is not None:
        from modeling.models.teacher import load_teacher

        require_dir("--teacher_dir", model_args.teacher_dir)
        teacher, teacher_config = load_teacher(model_args.teacher_dir)
        if teacher_config["labels"] != names:
            raise UsageError(
                f"--teacher_dir {model_args.teacher_dir}: its classes {teacher_config['labels']} differ from the "
                f"dataset's {names}"
            )
        logger.info(
            "Distilling from %s (%s, alpha %g, T %g)",
            model_args.teacher_dir,
            "hard" if model_args.hard_distillation else "soft",
            model_args.distillation_alpha,
            model_args.distillation_temperature,
        )

    # 9. Trainer.
    trainer = FERTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set if training_args.do_train else None,
        eval_dataset=eval_set if training_args.do_eval or training_args.eval_strategy != "no" else None,
        data_collator=collator,
        processing_class=processor,
        compute_metrics=make_compute_metrics(len(names), dict(enumerate(names))),
        sample_weights=sample_weights,
        layer_decay=training_args.layer_decay,
        label_smoothing=0.0 if mixup is not None else data_args.label_smoothing,
        mixup=mixup,
        teacher=teacher,
        distillation_alpha=model_args.distillation_alpha,
        distillation_temperature=model_args.distillation_temperature,
        hard_distillation=model_args.hard_distillation,
    )

    results: dict = {"learning_rate": training_args.learning_rate, "total_batch_size": total_batch}
    # 10. Train, then keep a plain ViTForImageClassification (LoRA merged unless asked otherwise).
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or checkpoint_found)
        train_result.metrics["train_samples"] = len(train_set)
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        results.update(train_result.metrics)
        if model_args.lora_r > 0 and not model_args.save_adapter_only:
            trainer.model = trainer.model.merge_and_unload()
            trainer.model_wrapped = trainer.model
        if data_args.logit_adjustment:
            results.update(adjust_logits(trainer, train_targets, sample_weights, len(names)))
        trainer.save_model()
        if trainer.is_world_process_zero():  # safetensors writes 0600; checkpoints too (modeling/models/file_modes.py)
            share_like_other_outputs(training_args.output_dir)

    # 11. Evaluate on validation (the split used for selection).
    if training_args.do_eval:
        metrics = trainer.evaluate()
        metrics["eval_samples"] = len(eval_set)  # the card's "examples" cell (predict() writes test_samples)
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results.update(metrics)

    # 12. Predict: the official test split, once, with the selected model.
    if training_args.do_predict and test_set is not None:
        from modeling.data.duplicates import find_duplicate_mask
        from modeling.data.report import saved_report

        # The full splits' test rows with a copy in another split: from the preparation report when it holds them
        duplicate = find_duplicate_mask(splits, test_name, report=saved_report(splits))
        results.update(
            predict(trainer, test_set, apply, eval_tf, names, data_args.tta_flip, test_name, training_args, duplicate)
        )

    run_info = {"learning_rate": training_args.learning_rate, "total_batch_size": total_batch, "precision": precision}
    trainer.save_metrics("run", run_info)

    # 13. Model card and Hub.
    if trainer.is_world_process_zero() and training_args.do_train and not model_args.save_adapter_only:
        from modeling.hub.model_card import write_model_card

        all_results = json.loads((Path(training_args.output_dir) / "all_results.json").read_text())
        write_model_card(
            training_args.output_dir,
            all_results,
            dataset_name=data_args.dataset_name,
            dataset_config=eval_config,
            repo_id=trainer.hub_model_id or hub_id_or_none(training_args.hub_model_id),
            base_model=hub_id_or_none(model_args.model_name_or_path),
            details=_recipe_summary(
                model_args, data_args, training_args, trainer.state, total_batch, trainer.model.config
            ),
            pretraining=_pretraining_phrase(model_args.model_name_or_path),
        )
    if training_args.push_to_hub:
        trainer.push_to_hub(
            tags=["facial-expression-recognition", "vit", "mae"], finetuned_from=model_args.model_name_or_path
        )
    return results


def adjust_logits(trainer, train_targets, sample_weights, num_labels: int) -> dict:
    """``--logit_adjustment``: the shift chosen on validation, folded into the trained model's classifier (the
    saved model carries it); the validation grid goes to ``logit_adjustment.json``."""
    from modeling.training.logit_adjustment import adjust, training_prior

    if trainer.eval_dataset is None:
        raise UsageError("--logit_adjustment chooses its strength on the validation split: it needs --do_eval")
    output = trainer.predict(trainer.eval_dataset, metric_key_prefix="adjust")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    prior = training_prior(train_targets, num_labels, sample_weights)
    record = adjust(trainer.model, logits, output.label_ids, prior)
    if trainer.is_world_process_zero():
        (Path(trainer.args.output_dir) / "logit_adjustment.json").write_text(json.dumps(record, indent=2))
    metrics = {"logit_adjustment_tau": record["tau"]}
    trainer.save_metrics("adjust", metrics)  # also into all_results.json
    return metrics


def predict(trainer, test_set, apply, eval_tf, names, tta_flip, test_name, training_args, duplicate=None) -> dict:
    """Scores ``test_set`` once; writes ``test_*`` metrics, ``test_predictions.csv`` and the confusion matrix.

    ``duplicate`` (``[N]`` bool over the full test split, True: an exact pixel copy of a training or validation
    image) adds ``test_dedup_*``: the metrics on the other faces (``modeling.data.duplicates``).
    """
    references = np.asarray(test_set["label"])
    output = trainer.predict(test_set.with_transform(apply(eval_tf)), metric_key_prefix="test")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()
    if tta_flip:
        flipped = trainer.predict(test_set.with_transform(apply(eval_tf, flip=True)), metric_key_prefix="test")
        flipped_logits = flipped.predictions[0] if isinstance(flipped.predictions, tuple) else flipped.predictions
        probs = (probs + torch.softmax(torch.as_tensor(flipped_logits, dtype=torch.float32), dim=-1).numpy()) / 2
    full = fer_metrics(probs.argmax(-1), references, len(names))
    metrics = {f"test_{k}": v for k, v in scalar_metrics(full, dict(enumerate(names))).items()}
    metrics["test_samples"] = len(references)
    recalls = zip(names, full["per_class_recall"])
    metrics["test_per_class_recall"] = {n: r for n, r in recalls if r == r}  # NaN (class absent) left out
    metrics["test_split"] = test_name
    if duplicate is not None:  # test_set may be the first max_predict_samples rows of the split
        dedup = dedup_metrics(probs.argmax(-1), references, duplicate[: len(references)], len(names))
        metrics.update({f"test_{k}": v for k, v in dedup.items()})
    trainer.log_metrics("test", {k: v for k, v in metrics.items() if not isinstance(v, dict)})
    trainer.save_metrics("test", metrics)
    if trainer.is_world_process_zero():
        from modeling.evaluation.plots import plot_confusion_matrix

        out = Path(training_args.output_dir)
        write_predictions_csv(out / "test_predictions.csv", probs, references, dict(enumerate(names)))
        (out / "test_confusion_matrix.json").write_text(json.dumps(full["confusion_matrix"]))
        plot_confusion_matrix(
            full["confusion_matrix"], names, out / "confusion_matrix_test.png", title=f"{test_name} split"
        )
    return metrics


def hub_id_or_none(source: str | None) -> str | None:
    """``source`` when it names a Hub repository (``owner/name``, not a local path), else None."""
    if source is None or Path(source).exists() or source.count("/") != 1 or source.startswith((".", "/")):
        return None
    return source


def _pretraining_phrase(source: str | None) -> str:
    if source is None:
        return "trained from scratch"
    from transformers import AutoConfig

    try:  # already loaded once for training, so local or cached
        is_mae = Path(source).is_file() or AutoConfig.from_pretrained(source).model_type == "vit_mae"
    except OSError:
        is_mae = False
    return "pretrained as a masked autoencoder and fine-tuned" if is_mae else "fine-tuned from a ViT checkpoint"


def _recipe_summary(model_args, data_args, training_args, state, total_batch: int, model_config=None) -> dict:
    """The card's recipe rows; the training length is what ran (``state``: the trainer's), not what was asked."""
    from modeling.hub.model_card import training_length

    rows = {
        "Starting point": model_args.model_name_or_path or f"{model_args.model_size} from scratch",
        "Fine-tuning": (
            f"{training_length(state.global_step, state.epoch, total_batch)}, "
            f"lr {training_args.learning_rate:.3g}, layer decay {training_args.layer_decay}, weight decay "
            f"{training_args.weight_decay}, drop path {model_args.drop_path}, augmentation '{data_args.augmentation}', "
            f"mixup {data_args.mixup}, cutmix {data_args.cutmix}, label smoothing {data_args.label_smoothing}, "
            f"sampler '{data_args.weighted_sampler}', LoRA r {model_args.lora_r}, seed {training_args.seed}"
        ),
    }
    adjustment = getattr(model_config, "logit_adjustment", None)
    if adjustment:
        rows["Logit adjustment"] = (
            f"tau {adjustment['tau']:g} times the log of the training class prior subtracted from the logits (folded "
            f"into the classifier bias), tau chosen on validation by the {adjustment['criterion']}"
        )
    if data_args.eval_dataset_config_name not in (None, data_args.dataset_config_name):
        rows["Training labels"] = (
            f"the '{data_args.dataset_config_name}' protocol, selected and scored on "
            f"'{data_args.eval_dataset_config_name}'"
        )
    if model_args.teacher_dir:
        kind = "hard (the teacher's argmax)" if model_args.hard_distillation else "soft"
        rows["Distillation"] = (
            f"{kind}, from a ResNet-18 teacher trained on the same training faces ({Path(model_args.teacher_dir).name}),"
            f" alpha {model_args.distillation_alpha:g}, T {model_args.distillation_temperature:g}; the model is a plain ViT"
        )
    return rows


if __name__ == "__main__":
    try:
        status = run_main(main, "run_finetune.py")
    finally:
        end_distributed()
    sys.exit(status)
