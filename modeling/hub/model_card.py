"""Model cards rendered from measured results, never edited by hand (after timm ``_hub.py`` generate_readme).

``write_model_card(output_dir, results)`` takes the ``all_results.json`` content of a
fine-tuning run (``eval_accuracy``, ``test_accuracy``, ``test_balanced_accuracy``, ...) and
optionally the reports of :mod:`modeling.inference.evaluate` on other datasets, and writes
``output_dir/README.md`` from ``model_cards/TEMPLATE.md``: YAML metadata with a
``model-index`` (one result per dataset and split: accuracy, balanced accuracy, macro F1),
then details, label order, usage, evaluation, any extra ``sections`` (title -> markdown body, e.g. a comparison
with other models), intended use, risks and citation. Where the results
hold ``<prefix>_dedup_*`` (``dedup_*`` in an evaluation report), the evaluation adds a table of the
metrics on the de-duplicated examples: those without an exact pixel copy in another split of the
dataset (:mod:`modeling.data.duplicates`; FER+ test has such copies of training faces).

The usage snippet names the Hub id when one is known (``repo_id``), else the local folder the
card is written to, with how to push it (``python -m modeling.hub.push``); it never names a Hub
repository that may not exist. For a model trained on grayscale faces (``grayscale_input`` in its
config) it converts the image to gray first, as training did. A table cell with nothing measured
reads ``n/a``, never blank.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "model_cards" / "TEMPLATE.md"
CARD_METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro F1"),
)
# Trainer metric prefixes in all_results.json and the split they measure.
PREFIX_SPLITS: dict[str, str] = {"eval": "validation", "test": "test"}
DATASET_NAMES: dict[str, str] = {"ferplus": "FER+", "rafdb": "RAF-DB", "affectnet": "AffectNet"}
SEED_PAPER = "arXiv:2207.11081"
MISSING = "n/a"  # what a table cell says when nothing was measured: a blank cell reads as a rendering bug
PLACEHOLDER_DIR = "path/to/model/folder"  # the snippet's model argument when neither Hub id nor folder is known


@dataclass
class Evaluation:
    """Measured metrics of one model on one dataset split."""

    dataset: str
    split: str
    metrics: dict[str, float]
    config: str | None = None
    num_examples: int | None = None
    per_class_recall: dict[str, float] = field(default_factory=dict)
    dedup_metrics: dict[str, float] = field(default_factory=dict)  # on the examples without a copy in another split
    dedup_num_examples: int | None = None  # None: no de-duplication was measured

    @property
    def pretty_name(self) -> str:
        name = DATASET_NAMES.get(self.dataset.lower(), self.dataset)
        return f"{name} ({self.config})" if self.config else name


def evaluations_from_results(
    results: Mapping[str, Any], dataset: str, config: str | None = None, labels: Sequence[str] | None = None
) -> list[Evaluation]:
    """One :class:`Evaluation` per Trainer prefix (``eval_``, ``test_``) holding at least ``<prefix>_accuracy``."""
    evaluations = []
    for prefix, split in PREFIX_SPLITS.items():
        metrics = {k: float(results[f"{prefix}_{k}"]) for k, _ in CARD_METRICS if f"{prefix}_{k}" in results}
        if "accuracy" not in metrics:
            continue
        recall = results.get(f"{prefix}_per_class_recall")
        if isinstance(recall, Sequence) and labels is not None and len(recall) == len(labels):
            recall = dict(zip(labels, recall))
        n = results.get(f"{prefix}_samples")
        dedup, dedup_n = _dedup(results, f"{prefix}_")
        evaluations.append(
            Evaluation(
                dataset,
                split,
                metrics,
                config,
                int(n) if n else None,
                dict(recall or {}) if isinstance(recall, Mapping) else {},
                dedup,
                dedup_n,
            )
        )
    return evaluations


def _dedup(results: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, float], int | None]:
    """The ``<prefix>dedup_*`` metrics and ``<prefix>dedup_samples`` of ``results`` (``{}, None`` when absent)."""
    n = results.get(f"{prefix}dedup_samples")
    metrics = {k: float(results[f"{prefix}dedup_{k}"]) for k, _ in CARD_METRICS if f"{prefix}dedup_{k}" in results}
    return metrics, None if n is None else int(n)


def evaluation_from_report(report: Mapping[str, Any]) -> Evaluation:
    """An :class:`Evaluation` from the JSON written by ``python -m modeling.inference.evaluate``."""
    metrics = {k: float(report[k]) for k, _ in CARD_METRICS if k in report}
    return Evaluation(
        report["dataset_name"],
        report["split"],
        metrics,
        report.get("dataset_config_name"),
        report.get("num_examples"),
        dict(report.get("per_class_recall") or {}),
        *_dedup(report),
    )


def eval_results(evaluations: Sequence[Evaluation]) -> list[EvalResult]:
    """``huggingface_hub`` ``EvalResult`` rows: one per metric, grouped by the Hub into one result per dataset split."""
    rows = []
    for ev in evaluations:
        for key, name in CARD_METRICS:
            if key not in ev.metrics:
                continue
            rows.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Facial expression recognition",
                    dataset_type=ev.dataset,
                    dataset_name=ev.pretty_name,
                    dataset_config=ev.config,
                    dataset_split=ev.split,
                    metric_type=key,
                    metric_name=name,
                    metric_value=round(ev.metrics[key], 6),
                )
            )
    return rows


def training_length(steps: int, epochs: float | None, total_batch: int | None = None) -> str:
    """What ran, from the trainer state: ``(60, 2.4, 16)`` -> ``"60 steps (2.4 epochs) of total batch 16"``.

    ``steps`` are optimizer steps (``TrainerState.global_step``) and ``epochs`` the epochs completed
    (``TrainerState.epoch``, fractional when ``--max_steps`` ends training mid-epoch), so the card
    never repeats a ``num_train_epochs`` that ``--max_steps`` overrode.
    """
    text = f"{steps} step{'' if steps == 1 else 's'}"
    if epochs is not None:
        epochs = round(float(epochs), 2)
        text += f" ({epochs:g} epoch{'' if epochs == 1 else 's'})"
    return text + (f" of total batch {total_batch}" if total_batch else "")


def _cell(value: Any) -> str:
    """A table cell: ``MISSING`` for None or blank values, so that no rendered row has an empty cell."""
    text = "" if value is None else str(value).strip()
    return text or MISSING


def _display_path(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies below it (no machine paths in a card), else as given."""
    path = Path(path)
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return os.path.normpath(path)


def _read_config(output_dir: Path) -> dict[str, Any]:
    path = output_dir / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def model_details(config: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Rows of the "Model details" table: architecture from ``config.json``, then ``extra`` (recipe, data)."""
    rows: dict[str, str] = {}
    if config:
        arch = ", ".join(config.get("architectures") or [config.get("model_type", "?")])
        rows["architecture"] = (
            f"{arch}: hidden {config.get('hidden_size')}, {config.get('num_hidden_layers')} layers, "
            f"{config.get('num_attention_heads')} heads, patch {config.get('patch_size')}, "
            f"input {config.get('image_size')}x{config.get('image_size')}, CLS-token pooling"
        )
    for key, value in (extra or {}).items():
        rows[str(key)] = _cell(value)
    return rows


def render_model_card(
    results: Mapping[str, Any],
    *,
    labels: Sequence[str],
    dataset_name: str,
    dataset_config: str | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
    model_dir: str | Path | None = None,
    base_model: str | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] = (),
    details: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    extra_evaluations: Sequence[Mapping[str, Any]] = (),
    confusion_matrix: str | None = None,
    training_data: str | None = None,
    pretraining: str = "pretrained as a masked autoencoder and fine-tuned",
    sections: Mapping[str, str] | None = None,
    template_path: str | Path = TEMPLATE_PATH,
) -> ModelCard:
    """The model card (``huggingface_hub.ModelCard``) of a run's ``results`` and other evaluation reports.

    ``repo_id`` is the Hub id when one is known (``--hub_model_id``); ``model_dir`` the local folder
    holding the card and weights. The usage snippet loads the Hub id, else that folder (else a marked
    placeholder for it). ``model_name`` (the title) defaults to the repository's or folder's name.
    ``sections`` (title -> markdown body, in order) are rendered as ``## title`` sections after the evaluation.
    """
    local = _display_path(model_dir) if model_dir is not None else None
    if not model_name:
        model_name = (repo_id.split("/")[-1] if repo_id else Path(local or "").name) or "fer-mae-vit"
    evaluations = evaluations_from_results(results, dataset_name, dataset_config, labels)
    evaluations += [evaluation_from_report(r) for r in extra_evaluations]
    datasets = list(dict.fromkeys([dataset_name] + [ev.dataset for ev in evaluations]))
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="image-classification",
        license=license,
        tags=list(
            dict.fromkeys(["vision", "image-classification", "facial-expression-recognition", "vit", "mae", *tags])
        ),
        datasets=datasets,
        base_model=base_model,
        eval_results=eval_results(evaluations) or None,
    )
    rows = [
        {
            "dataset_pretty": ev.pretty_name,
            "split": ev.split,
            "num_examples": _cell(ev.num_examples),
            **{k: f"{ev.metrics[k]:.4f}" if k in ev.metrics else MISSING for k, _ in CARD_METRICS},
        }
        for ev in evaluations
    ]
    dedup_rows = [
        {
            "dataset_pretty": ev.pretty_name,
            "split": ev.split,
            "num_examples": f"{ev.dedup_num_examples}" + (f" of {ev.num_examples}" if ev.num_examples else ""),
            "left_out": _cell(None if ev.num_examples is None else ev.num_examples - ev.dedup_num_examples),
            **{k: f"{ev.dedup_metrics[k]:.4f}" if k in ev.dedup_metrics else MISSING for k, _ in CARD_METRICS},
        }
        for ev in evaluations
        if ev.dedup_num_examples is not None
    ]
    with_recall = next((ev for ev in evaluations if ev.per_class_recall), None)
    summary = (
        f"A vanilla ViT classifying facial expressions into {len(labels)} classes, {pretraining} "
        f"on {DATASET_NAMES.get(dataset_name.lower(), dataset_name)}, following Li et al. ({SEED_PAPER})."
        + (f" Fine-tuned from [{base_model}](https://huggingface.co/{base_model})." if base_model else "")
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=model_name,
        repo_id=repo_id,
        model_dir=local or PLACEHOLDER_DIR,
        model_ref=repo_id or local or PLACEHOLDER_DIR,
        summary=summary,
        details=model_details(config or {}, details),
        labels=list(labels),
        evaluations=rows,
        dedup_evaluations=dedup_rows,
        per_class_recall={k: f"{v:.4f}" for k, v in (with_recall.per_class_recall if with_recall else {}).items()},
        per_class_recall_source=f"{with_recall.pretty_name} {with_recall.split}" if with_recall else "",
        confusion_matrix=confusion_matrix,
        training_data=training_data or DATASET_NAMES.get(dataset_name.lower(), dataset_name),
        grayscale_input=bool((config or {}).get("grayscale_input")),
        sections=dict(sections or {}),
    )


def write_model_card(
    output_dir: str | Path, results: Mapping[str, Any], sections: Mapping[str, str] | None = None, **kwargs: Any
) -> Path:
    """Writes ``output_dir/README.md`` from ``results`` (``all_results.json`` content); returns its path.

    ``labels`` and ``config`` default to the saved ``config.json`` of ``output_dir``,
    ``confusion_matrix`` to the first ``confusion_matrix*.png`` there, ``model_name`` to the folder's
    name and ``model_dir`` (the folder the usage snippet loads when no ``repo_id`` is given) to
    ``output_dir`` itself when it holds safetensors weights, else to a marked placeholder. ``sections``
    (title -> markdown body) are extra card sections after the evaluation. Other keyword arguments go to
    :func:`render_model_card` (``dataset_name`` is required).
    """
    if "model_dir" not in kwargs:
        has_weights = any(Path(output_dir).glob("*.safetensors"))
        kwargs["model_dir"] = output_dir if has_weights else None
        if not has_weights:
            logger.warning("%s holds no weights: the card's usage snippet names %s", output_dir, PLACEHOLDER_DIR)
    if not kwargs.get("model_name") and not kwargs.get("repo_id"):
        kwargs["model_name"] = Path(output_dir).resolve().name
    output_dir = Path(output_dir)
    config = kwargs.pop("config", None) or _read_config(output_dir)
    labels = kwargs.pop("labels", None)
    if labels is None:
        id2label = config.get("id2label") or {}
        labels = [id2label[k] for k in sorted(id2label, key=int)]
    if not labels:
        raise ValueError(f"No labels given and no id2label in {output_dir / 'config.json'}")
    if "confusion_matrix" not in kwargs:
        found = sorted(output_dir.glob("confusion_matrix*.png"))
        kwargs["confusion_matrix"] = found[0].name if found else None
    card = render_model_card(results, labels=labels, config=config, sections=sections, **kwargs)
    path = output_dir / "README.md"
    card.save(path)
    logger.info("Wrote the model card %s", path)
    return path
