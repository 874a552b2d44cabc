"""Evaluation report of a saved classifier on one dataset split.

    python -m modeling.inference.evaluate MODEL --dataset_name ferplus --data_dir ../shared/data/ferplus \
        --split test --output_dir reports/ferplus_test

Prints and writes ``eval_<dataset>_<split>.json`` (accuracy, balanced accuracy, macro F1,
per-class recall, confusion matrix), ``confusion_matrix_<dataset>_<split>.png`` and
``hardest_<dataset>_<split>.png``, the misclassified images the model got most confidently wrong.
Accuracy, balanced accuracy and macro F1 are also given on the de-duplicated examples
(``dedup_*``): those without an exact pixel copy in another split of the dataset (FER+ test:
254 of the 3,137 majority faces have one in train or validation; :mod:`modeling.data.duplicates`).
That grid shows dataset images: keep it out of published artifacts when the dataset's terms
forbid redistribution (FER2013, AffectNet, RAF-DB all do).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cli import UsageError, plain_text, require_model, run_main, user_errors
from ..evaluation.metrics import dedup_metrics, fer_metrics
from ..labels import remap_indices
from ..precision import INFERENCE_PRECISIONS
from .predictor import FERPredictor, NotAnImageClassifierError

logger = logging.getLogger(__name__)


@dataclass
class EvalArguments:
    model: str
    dataset_name: str
    data_dir: str | None = None
    dataset_config_name: str | None = None
    split: str = "test"
    output_dir: str = "eval_report"
    cache_dir: str | None = None
    batch_size: int = 128
    device: str | None = None
    bf16: bool = False
    precision: str | None = None
    no_recheck: bool = False
    num_hardest: int = 25
    max_samples: int | None = None

    def __post_init__(self):
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be positive, got {self.batch_size}")
        if self.max_samples is not None and self.max_samples < 1:
            raise UsageError(f"max_samples must be positive, got {self.max_samples}")
        # float32 unless asked: a report's figures must not depend on the CPU the evaluation ran on.
        if self.bf16 and self.precision not in (None, "bf16"):
            raise UsageError(f"--bf16 contradicts --precision {self.precision}")
        self.precision = self.precision or ("bf16" if self.bf16 else "fp32")
        if self.precision not in INFERENCE_PRECISIONS:
            raise UsageError(f"precision must be one of {INFERENCE_PRECISIONS}, got {self.precision!r}")


def parse_args(argv: Sequence[str] | None = None) -> EvalArguments:
    p = argparse.ArgumentParser(
        prog="python -m modeling.inference.evaluate", description=plain_text(__doc__.split("\n\n")[0])
    )
    p.add_argument("model", help="Local model directory or Hub id")
    p.add_argument("--dataset_name", required=True, help="ferplus, rafdb or affectnet (see modeling.data)")
    p.add_argument("--data_dir", default=None, help="Folder holding the dataset's files")
    p.add_argument("--dataset_config_name", default=None, help="Dataset config, e.g. 7 or 8 for AffectNet")
    p.add_argument("--split", default="test", help="Split to evaluate")
    p.add_argument("--output_dir", default="eval_report", help="Where the JSON and PNG files go")
    p.add_argument("--cache_dir", default=None, help="datasets cache folder")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument(
        "--bf16", action="store_true", help="bf16 autocast on CUDA or on a CPU with bf16 units (AMX / AVX512-BF16)"
    )
    p.add_argument(
        "--precision",
        choices=INFERENCE_PRECISIONS,
        default=None,
        help="Arithmetic of the predictor (default fp32; bf16 with --bf16): int8 for the accuracy of fer-predict's "
        "fast CPU path, auto for what fer-predict picks on this machine; the report records it",
    )
    p.add_argument(
        "--no_recheck",
        action="store_true",
        help="int8: without the float32 re-runs of close calls (fer-predict --no_recheck): int8's own accuracy",
    )
    p.add_argument("--num_hardest", type=int, default=25, help="Misclassified examples in the grid")
    p.add_argument("--max_samples", type=int, default=None, help="Evaluate the first N examples only (smoke tests)")
    return EvalArguments(**vars(p.parse_args(argv)))


def load_splits(args: EvalArguments):
    """The ``DatasetDict`` of the dataset; ``args.split`` is one of its splits (``image``, ``label`` columns)."""
    from ..data import load_fer_dataset

    dsd = load_fer_dataset(args.dataset_name, args.data_dir, config=args.dataset_config_name, cache_dir=args.cache_dir)
    if args.split not in dsd:
        raise UsageError(f"{args.dataset_name} has no split {args.split!r}; it has {list(dsd)}")
    return dsd


def load_split(args: EvalArguments):
    """The ``datasets.Dataset`` of ``args.split`` with ``image`` and ``label`` (ClassLabel) columns."""
    return load_splits(args)[args.split]


def class_mapping(model_labels: Sequence[str], dataset_labels: Sequence[str]) -> tuple[list[int], list[int]]:
    """``(kept, target)``: model columns whose class exists in the dataset, and their dataset indices.

    A model trained on another label order (or with extra classes, e.g. contempt) is scored
    on the dataset's classes by name; predictions are the argmax over the kept columns.
    """
    kept = [i for i, name in enumerate(model_labels) if name in dataset_labels]
    if not kept:
        raise UsageError(
            f"The model's classes {list(model_labels)} share no name with the dataset's {list(dataset_labels)}"
        )
    target = remap_indices([model_labels[i] for i in kept], dataset_labels)
    missing = [n for n in dataset_labels if n not in model_labels]
    if missing:
        logger.warning("The model cannot predict the dataset classes %s; their recall is 0", missing)
    if len(kept) < len(model_labels):
        logger.warning(
            "Ignoring model classes absent from the dataset: %s", [n for n in model_labels if n not in dataset_labels]
        )
    return kept, target


def to_array(image: Any) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` (or gray ``[H, W]``) from a PIL image or array."""
    if hasattr(image, "convert"):
        image = image.convert("RGB") if image.mode not in ("L", "RGB") else image
    return np.asarray(image)


def evaluate_split(predictor: FERPredictor, dataset, batch_size: int = 128) -> dict[str, Any]:
    """Probabilities, predictions and references of ``dataset`` in the dataset's class order."""
    names = list(dataset.features["label"].names)
    kept, target = class_mapping(predictor.labels, names)
    probs_model, refs = [], []
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start : start + batch_size]
        probs_model.append(predictor.predict_proba([to_array(im) for im in batch["image"]], batch_size))
        refs.extend(int(r) for r in batch["label"])
    probs_model_arr = np.concatenate(probs_model) if probs_model else np.zeros((0, len(predictor.labels)))
    probs = np.zeros((len(refs), len(names)), np.float32)
    probs[:, target] = probs_model_arr[:, kept]
    return {"names": names, "probs": probs, "preds": probs.argmax(axis=1), "refs": np.asarray(refs, np.int64)}


def hardest_mistakes(probs: np.ndarray, preds: np.ndarray, refs: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` misclassified examples with the lowest probability on their true class."""
    wrong = np.flatnonzero(preds != refs)
    true_prob = probs[wrong, refs[wrong]]
    return [int(i) for i in wrong[np.argsort(true_prob, kind="stable")][:k]]


def main(argv: Sequence[str] | None = None) -> int:
    from ..data.duplicates import MAX_IMAGES, find_duplicate_mask
    from ..data.report import saved_report
    from ..evaluation.plots import plot_confusion_matrix, save_image_grid

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    require_model("", args.model)  # a missing local folder is not taken for a Hub id
    with user_errors(NotAnImageClassifierError):
        predictor = FERPredictor(
            args.model,
            device=args.device,
            cache_dir=args.cache_dir,
            precision=args.precision,
            recheck=not args.no_recheck,
        )
    splits = load_splits(args)
    dataset = splits[args.split]
    # Over the full split, from the preparation report when it holds the search; else searched (None above MAX_IMAGES)
    duplicate = find_duplicate_mask(splits, args.split, report=saved_report(splits))
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
        duplicate = None if duplicate is None else duplicate[: len(dataset)]
    logger.info("Evaluating %s on %s/%s (%d examples)", args.model, args.dataset_name, args.split, len(dataset))
    logger.info("Arithmetic: %s", predictor.precision_why)
    out = evaluate_split(predictor, dataset, args.batch_size)
    names = out["names"]
    m = fer_metrics(out["preds"], out["refs"], len(names))
    tag = f"{args.dataset_name}{'-' + args.dataset_config_name if args.dataset_config_name else ''}_{args.split}"
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cm_path = plot_confusion_matrix(
        m["confusion_matrix"],
        names,
        output_dir / f"confusion_matrix_{tag}.png",
        title=f"{args.dataset_name} {args.split}",
    )
    hard = hardest_mistakes(out["probs"], out["preds"], out["refs"], args.num_hardest)
    grid_path = None
    if hard:
        images = [to_array(dataset[i]["image"]) for i in hard]
        titles = [
            f"{names[out['refs'][i]]} -> {names[out['preds'][i]]} ({out['probs'][i, out['preds'][i]]:.2f})"
            for i in hard
        ]
        grid_path = save_image_grid(images, titles, output_dir / f"hardest_{tag}.png", title="true -> predicted (p)")
    report = {
        "model": str(args.model),
        "dataset_name": args.dataset_name,
        "dataset_config_name": args.dataset_config_name,
        "split": args.split,
        "num_examples": int(len(dataset)),
        "precision": predictor.precision,
        "precision_why": predictor.precision_why,
        **({"float32_reruns": predictor.recheck_counts} if predictor.rechecks else {}),
        "labels": names,
        "accuracy": m["accuracy"],
        "balanced_accuracy": m["balanced_accuracy"],
        "macro_f1": m["macro_f1"],
        **(dedup_metrics(out["preds"], out["refs"], duplicate, len(names)) if duplicate is not None else {}),
        "per_class_recall": dict(zip(names, m["per_class_recall"])),
        "support": dict(zip(names, m["support"])),
        "confusion_matrix": m["confusion_matrix"],
        "confusion_matrix_png": cm_path.name,
        "hardest_png": grid_path.name if grid_path else None,
    }
    metrics_path = output_dir / f"eval_{tag}.json"
    metrics_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{args.dataset_name} {args.split}: {len(dataset)} examples")
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        print(f"  {key:18s} {report[key]:.4f}")
    if duplicate is None:
        print(f"  de-duplicated: not computed (more than {MAX_IMAGES:,} images in the dataset)")
    else:
        print(f"  de-duplicated: {report['dedup_samples']} examples without an exact pixel copy in another split")
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            if f"dedup_{key}" in report:
                print(f"  {key:18s} {report[f'dedup_{key}']:.4f}  (de-duplicated)")
    for name, recall in report["per_class_recall"].items():
        print(f"  recall {name:11s} {recall:.4f}  (n={report['support'][name]})")
    print(f"wrote {metrics_path}, {cm_path.name}" + (f", {grid_path.name}" if grid_path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m modeling.inference.evaluate"))
