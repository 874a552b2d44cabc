"""Classification metrics FER papers report, computable offline.

``evaluate.load("accuracy")`` downloads its script from the Hub and fails offline
(NOTES #10), so the metric is a local ``evaluate.Metric`` subclass over one pure function.
Balanced accuracy is the mean per-class recall, the "mean class accuracy" of FER papers;
classes absent from the references are left out of that mean (their recall is undefined)
but kept, as NaN, in ``per_class_recall``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import datasets
import evaluate
import numpy as np


def confusion_matrix(predictions: Sequence[int], references: Sequence[int], num_labels: int) -> np.ndarray:
    """``[num_labels, num_labels]`` counts; row = true class, column = predicted class."""
    preds = np.asarray(predictions, dtype=np.int64).reshape(-1)
    refs = np.asarray(references, dtype=np.int64).reshape(-1)
    if preds.shape != refs.shape:
        raise ValueError(f"{preds.size} predictions but {refs.size} references")
    for name, arr in (("prediction", preds), ("reference", refs)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_labels):
            raise ValueError(f"A {name} is outside 0..{num_labels - 1}: min {arr.min()}, max {arr.max()}")
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(cm, (refs, preds), 1)
    return cm


def fer_metrics(predictions: Sequence[int], references: Sequence[int], num_labels: int) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, per-class recall/precision/F1 and the confusion matrix.

    Macro F1 averages over the classes present in references or predictions; a class with
    no true and no predicted sample has an undefined F1 and is left out.
    """
    cm = confusion_matrix(predictions, references, num_labels)
    total = cm.sum()
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)  # true count per class
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        denom = precision + np.nan_to_num(recall)
        f1 = np.where(denom > 0, 2 * precision * np.nan_to_num(recall) / denom, 0.0)
    present = (support > 0) | (predicted > 0)
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "balanced_accuracy": float(np.nanmean(recall)) if (support > 0).any() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class_recall": [float(x) for x in recall],
        "per_class_precision": [float(x) for x in precision],
        "per_class_f1": [float(x) for x in f1],
        "support": [int(x) for x in support],
        "confusion_matrix": cm.tolist(),
    }


class FERMetrics(evaluate.Metric):
    """Offline ``evaluate`` metric: ``FERMetrics(num_labels=8).compute(predictions=..., references=...)``."""

    def __init__(self, num_labels: int, **kwargs: Any):
        if num_labels < 1:
            raise ValueError(f"num_labels must be positive, got {num_labels}")
        self.num_labels = int(num_labels)
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Accuracy, balanced accuracy (mean class recall), macro F1, per-class recall, confusion matrix.",
            citation="",
            inputs_description="predictions and references: class indices",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references) -> dict[str, Any]:
        return fer_metrics(predictions, references, self.num_labels)


def scalar_metrics(metrics: dict[str, Any], id2label: dict[int, str] | None = None) -> dict[str, float]:
    """The scalar part of :func:`fer_metrics`, with per-class recall flattened to ``recall_<name>``.

    The Trainer logs and compares only scalars, and JSON has no NaN: undefined recalls are dropped.
    """
    out = {k: v for k, v in metrics.items() if isinstance(v, float)}
    for i, r in enumerate(metrics.get("per_class_recall", [])):
        if r == r:  # not NaN
            name = id2label[i] if id2label else str(i)
            out[f"recall_{name}"] = r
    return out


def make_compute_metrics(num_labels: int, id2label: dict[int, str] | None = None) -> Callable:
    """A ``compute_metrics`` for the Trainer: logits ``[N, C]`` (or a tuple holding them) and labels.

    Labels may be class indices ``[N]`` or soft targets ``[N, C]`` (FER+ ``probability``);
    soft targets are scored against their arg-max.
    """

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        preds = np.asarray(logits).argmax(-1)
        labels = np.asarray(labels)
        if labels.ndim == 2:
            labels = labels.argmax(-1)
        return scalar_metrics(fer_metrics(preds, labels, num_labels), id2label)

    return compute_metrics


def dedup_metrics(
    predictions: Sequence[int], references: Sequence[int], duplicate: Sequence[bool], num_labels: int
) -> dict[str, Any]:
    """``dedup_accuracy``, ``dedup_balanced_accuracy``, ``dedup_macro_f1`` on the rows where ``duplicate`` is
    False, and their number ``dedup_samples`` (metrics left out when no row is left: JSON has no NaN)."""
    keep = ~np.asarray(duplicate, dtype=bool)
    preds, refs = np.asarray(predictions), np.asarray(references)
    if keep.shape != refs.shape:
        raise ValueError(f"{keep.size} duplicate flags for {refs.size} references")
    out: dict[str, Any] = {"dedup_samples": int(keep.sum())}
    if keep.any():
        m = fer_metrics(preds[keep], refs[keep], num_labels)
        out.update({f"dedup_{k}": m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")})
    return out
