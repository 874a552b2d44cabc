"""Canonical emotion names and each dataset's official class order.

Every model this package creates gets its ``id2label``/``label2id`` from here, so that
``pipeline("image-classification")`` shows names and a checkpoint's class order is never
ambiguous. Names are lowercase; the order of each tuple is the dataset's own label order.
"""

from __future__ import annotations

from collections.abc import Sequence

# The union of the classes used by the FER datasets below, in FER+ vote-column order.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)

# RAF-DB basic: labels 1..7 in EmoLabel/list_patition_label.txt (index i is label i + 1).
RAFDB_LABELS: tuple[str, ...] = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")

# AffectNet manual annotations: expression 0..7; 8..10 (none, uncertain, non-face) are not emotions.
AFFECTNET8_LABELS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "sadness",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)
AFFECTNET7_LABELS: tuple[str, ...] = AFFECTNET8_LABELS[:7]
AFFECTNET_NON_EMOTIONS: tuple[str, ...] = ("none", "uncertain", "non-face")

# FER+: the first 8 of the 10 vote columns of label.csv / fer2013new.csv (then unknown, NF).
FERPLUS_LABELS: tuple[str, ...] = EMOTIONS
FERPLUS_VOTE_COLUMNS: tuple[str, ...] = EMOTIONS + ("unknown", "not_face")

DATASET_LABELS: dict[str, tuple[str, ...]] = {
    "rafdb": RAFDB_LABELS,
    "affectnet-7": AFFECTNET7_LABELS,
    "affectnet-8": AFFECTNET8_LABELS,
    "ferplus": FERPLUS_LABELS,
}


def labels_for(dataset_name: str, config_name: str | None = None) -> tuple[str, ...]:
    """Official class order of ``dataset_name`` (``rafdb``, ``affectnet``, ``ferplus``).

    AffectNet's config ``"7"`` drops contempt; every other config keeps the dataset's order.
    """
    name = dataset_name.lower().replace("_", "").replace("-", "")
    if name == "affectnet":
        key = "affectnet-7" if str(config_name) == "7" else "affectnet-8"
        return DATASET_LABELS[key]
    if name in ("rafdb", "raf"):
        return RAFDB_LABELS
    if name in ("ferplus", "fer+"):
        return FERPLUS_LABELS
    raise ValueError(f"No official label order for dataset {dataset_name!r}; known: rafdb, affectnet, ferplus")


def _check(names: Sequence[str]) -> list[str]:
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"Label names must be unique, got {names}")
    return names


def id2label(names: Sequence[str]) -> dict[int, str]:
    """``{0: names[0], ...}`` as transformers configs expect."""
    return dict(enumerate(_check(names)))


def label2id(names: Sequence[str]) -> dict[str, int]:
    """``{names[0]: 0, ...}``, the inverse of :func:`id2label`."""
    return {n: i for i, n in enumerate(_check(names))}


def label_maps(names: Sequence[str]) -> dict[str, dict]:
    """Keyword arguments for a transformers config: ``id2label``, ``label2id`` and implicitly ``num_labels``."""
    return {"id2label": id2label(names), "label2id": label2id(names)}


def remap_indices(source: Sequence[str], target: Sequence[str]) -> list[int]:
    """Index map from one class order to another: ``target.index(source[i])`` for every i.

    Used to evaluate a model trained on one dataset's order against another's labels.
    Raises if a source class has no counterpart in the target.
    """
    missing = [n for n in source if n not in target]
    if missing:
        raise ValueError(f"Classes {missing} of {list(source)} do not exist in {list(target)}")
    return [list(target).index(n) for n in source]
