"""Post-hoc logit adjustment: trading a little accuracy for the rare classes' recall, chosen on validation.

A classifier trained on a skewed class distribution ``p`` (FER+: neutral and happiness are 60% of the faces,
contempt and disgust under 1% each) learns scores that carry ``log p``: its argmax favours the frequent classes,
which is right for accuracy and wrong for balanced accuracy (the mean of the class recalls). Subtracting
``tau * log p`` from the logits undoes that prior; ``tau = 1`` targets the balanced error, ``tau = 0`` changes
nothing (the idea and its analysis: Menon et al., "Long-tail learning via logit adjustment", ICLR 2021).

Here ``p`` is the class distribution the training *saw*: the mean training target, each example weighted by its
weighted-sampler draw probability (one-hot labels, or FER+ vote distributions), so a sampler that already
rebalanced the classes leaves less to undo. ``tau`` comes from a grid, chosen on the validation split by the mean of
accuracy and balanced accuracy (both numbers users read); the shift is then folded into the classifier's bias, so
the adjusted model is a plain ``ViTForImageClassification`` that loads anywhere, and its config records the shift
(``logit_adjustment``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..evaluation.metrics import fer_metrics

logger = logging.getLogger(__name__)

TAU_GRID = tuple(round(0.05 * i, 2) for i in range(41))  # 0, 0.05, ..., 2
CRITERION = "mean of validation accuracy and balanced accuracy"


def training_prior(targets: np.ndarray, num_labels: int, sample_weights: np.ndarray | None = None) -> np.ndarray:
    """The class distribution of the training targets as drawn: ``[num_labels]`` float64, summing to 1.

    targets: ``[N]`` integer class ids or ``[N, num_labels]`` label distributions (rows summing to 1).
    sample_weights: ``[N]`` draw weights of the weighted sampler (any positive scale), or None (uniform).
    """
    targets = np.asarray(targets)
    if targets.ndim == 1:
        if not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"1-D targets must be integer class ids, got dtype {targets.dtype}")
        if targets.size and (targets.min() < 0 or targets.max() >= num_labels):
            raise ValueError(f"class ids must lie in [0, {num_labels}), got {targets.min()}..{targets.max()}")
        targets = np.eye(num_labels)[targets]
    if targets.ndim != 2 or targets.shape[1] != num_labels or targets.shape[0] == 0:
        raise ValueError(f"targets must be [N] ids or [N, {num_labels}] distributions, got shape {targets.shape}")
    weights = np.ones(len(targets)) if sample_weights is None else np.asarray(sample_weights, dtype=np.float64)
    if weights.shape != (len(targets),) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"sample_weights must be [{len(targets)}] non-negative with a positive sum")
    prior = (weights[:, None] * targets.astype(np.float64)).sum(0)
    return prior / prior.sum()


def log_prior_shift(prior: np.ndarray, tau: float, floor: float = 1e-6) -> np.ndarray:
    """``-tau * log(prior)``, the amount added to each class's logit; a class never seen gets ``floor``'s log."""
    return -tau * np.log(np.maximum(np.asarray(prior, dtype=np.float64), floor))


def choose_tau(
    logits: np.ndarray, references: Sequence[int], prior: np.ndarray, grid: Sequence[float] = TAU_GRID
) -> tuple[float, list[dict]]:
    """The ``tau`` of ``grid`` maximising the mean of accuracy and balanced accuracy of the adjusted ``logits``
    ``[N, C]`` against ``references``; ties go to the smallest ``tau`` (the least change). Returns it and one row
    per grid value (``tau``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``)."""
    logits = np.asarray(logits, dtype=np.float64)
    references = np.asarray(references)
    if logits.ndim != 2 or len(logits) != len(references) or len(references) == 0:
        raise ValueError(f"logits [N, C] and references [N] must match, got {logits.shape} and {references.shape}")
    rows, best, best_score = [], None, -np.inf
    for tau in grid:
        predictions = (logits + log_prior_shift(prior, tau)).argmax(-1)
        m = fer_metrics(predictions, references, logits.shape[1])
        row = {"tau": float(tau), **{k: float(m[k]) for k in ("accuracy", "balanced_accuracy", "macro_f1")}}
        rows.append(row)
        score = (row["accuracy"] + row["balanced_accuracy"]) / 2
        if score > best_score + 1e-12:
            best, best_score = float(tau), score
    return best, rows


def fold_into_classifier(model: torch.nn.Module, shift: np.ndarray) -> None:
    """Adds ``shift`` ``[C]`` to the bias of ``model.classifier`` (a ``ViTForImageClassification`` head), in place:
    the model's logits become the adjusted ones for every input."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear) or head.bias is None or head.out_features != len(shift):
        raise ValueError(f"expected a Linear classifier with a bias of {len(shift)} classes, got {head!r}")
    with torch.no_grad():
        head.bias.add_(torch.as_tensor(shift, dtype=head.bias.dtype, device=head.bias.device))


def adjust(model, logits: np.ndarray, references: Sequence[int], prior: np.ndarray) -> dict:
    """Chooses ``tau`` on validation ``logits``/``references``, folds the shift into ``model`` and records it in
    ``model.config.logit_adjustment``; returns that record (with the grid's validation figures)."""
    tau, rows = choose_tau(logits, references, prior)
    shift = log_prior_shift(prior, tau)
    fold_into_classifier(model, shift)
    record = {
        "tau": tau,
        "prior": [round(float(p), 6) for p in prior],
        "bias_shift": [round(float(s), 6) for s in shift],
        "chosen_on": "validation",
        "criterion": CRITERION,
        "grid": rows,
    }
    model.config.logit_adjustment = {k: v for k, v in record.items() if k != "grid"}
    chosen = next(r for r in rows if r["tau"] == tau)
    logger.warning(
        "Logit adjustment: tau %.2f chosen on validation (accuracy %.4f -> %.4f, balanced accuracy %.4f -> %.4f)",
        tau, rows[0]["accuracy"], chosen["accuracy"], rows[0]["balanced_accuracy"], chosen["balanced_accuracy"],
    )  # fmt: skip
    return record
