"""FER+ (FER2013 faces with Microsoft's 10-annotator votes) as a ``DatasetDict``.

Two layouts are read:

* the official FER+ folders ``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/``, each with
  ``ferNNNNNNN.png`` files and a header-less ``label.csv``
  (``name,"(0, 0, 48, 48)",`` + 10 vote counts);
* Kaggle's ``fer2013.csv`` (``emotion,pixels,Usage``) with Microsoft's ``fer2013new.csv``
  (``Usage,Image name,`` + 10 counts), row i of one describing row i of the other.

Splits: ``train`` (Training / FER2013Train), ``validation`` (PublicTest / FER2013Valid),
``test`` (PrivateTest / FER2013Test). Configs are the label protocols of
:mod:`modeling.data.ferplus_votes`. Columns: ``image``, ``label``, ``votes`` (the 10 raw counts)
and, for ``probability``, ``soft_label`` (8 floats summing to 1).

Facts of the release handled here (../shared/data/ferplus/SOURCE.md): 173 rows of
``fer2013new.csv`` have no image name (non-faces FER+ dropped; excluded and counted); 4 names
occur twice. In the pair layout the first row of a repeated name is used (its votes are the ones
the official ``label.csv`` carries) and later rows are excluded as ``duplicate name``. In the
official layout the stored PNG of ``fer0033120`` is the later row's non-face picture, which FER+
labels neutral; it is kept, as in every published count.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from ..labels import FERPLUS_LABELS
from .base import FerBuilder
from .ferplus_votes import NUM_VOTES, PROTOCOLS, Target, target
from .images import CheckedImage, stored
from .report import DatasetLayoutError, SplitReport

FOLDERS = {"train": "FER2013Train", "validation": "FER2013Valid", "test": "FER2013Test"}
USAGES = {"train": "Training", "validation": "PublicTest", "test": "PrivateTest"}
PIXELS = 48 * 48


class FerPlus(FerBuilder):
    DATASET = "ferplus"
    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIGS = [datasets.BuilderConfig(name=p, version=datasets.Version("1.0.0")) for p in PROTOCOLS]
    DEFAULT_CONFIG_NAME = "majority"
    LAYOUT = (
        "  either the official FER+ folders FER2013Train/, FER2013Valid/, FER2013Test/, each holding\n"
        "    ferNNNNNNN.png images and label.csv without header:\n"
        '    name,"(0, 0, 48, 48)",neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n'
        "  or the pair fer2013.csv (Kaggle: emotion,pixels,Usage) + fer2013new.csv (Microsoft:\n"
        "    Usage,Image name,neutral,...,NF), with the same rows in the same order."
    )
    # The majority sizes are the FER+ paper's; the others are what the released labels give
    # under the rules of ferplus_votes (measured on the official release).
    EXPECTED_SIZES = {
        "majority": {"train": 25045, "validation": 3191, "test": 3137},
        "probability": {"train": 27947, "validation": 3508, "test": 3507},
        "plurality": {"train": 26940, "validation": 3396, "test": 3371},
    }

    def class_names(self) -> list[str]:
        return list(FERPLUS_LABELS)

    @classmethod
    def label_files(cls, root: Path) -> list[Path]:
        candidates = [root / f / "label.csv" for f in FOLDERS.values()]
        candidates += [root / "fer2013new.csv", root / "fer2013.csv"]
        return [p for p in candidates if p.is_file()]

    def _info(self) -> datasets.DatasetInfo:
        features = {
            "image": self.image_feature(),
            "label": self.label_feature(),
            "votes": datasets.List(datasets.Value("int32"), length=NUM_VOTES),
        }
        if self.config.name == "probability":
            features["soft_label"] = datasets.List(datasets.Value("float32"), length=len(FERPLUS_LABELS))
        return datasets.DatasetInfo(
            description="FER+ (FER2013 faces, FER+ 10-annotator votes)", features=datasets.Features(features)
        )

    def layout(self) -> str:
        if any((self.root / f).exists() for f in FOLDERS.values()):
            return "official"
        if (self.root / "fer2013new.csv").exists() or (self.root / "fer2013.csv").exists():
            return "pair"
        raise DatasetLayoutError(
            f"no FER+ data found: neither {self.root / FOLDERS['train']} nor {self.root / 'fer2013new.csv'} exists\n"
            + self.layout_text(self.root)
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        layout = self.layout()
        for folder in FOLDERS.values():  # fail before any work when a piece is missing
            if layout == "official":
                self.require(self.root / folder, "image folder")
                self.require(self.root / folder / "label.csv", "label file")
        if layout == "pair":
            self.require(self.root / "fer2013new.csv", "label file")
            self.require(self.root / "fer2013.csv", "pixel file")
        return [
            datasets.SplitGenerator(
                name=getattr(datasets.Split, split.upper()), gen_kwargs={"split": split, "layout": layout}
            )
            for split in FOLDERS
        ]

    def _generate_examples(self, split: str, layout: str) -> Iterator[tuple[str, dict]]:
        if layout == "official":
            yield from self._official(split)
        else:
            yield from self._pair(split)
        self.finish_split(split)

    # -- official layout ----------------------------------------------------------------------
    def _official(self, split: str) -> Iterator[tuple[str, dict]]:
        report = self.split_report(split)
        folder = self.root / FOLDERS[split]
        label_path = folder / "label.csv"
        seen: set[str] = set()
        with open(label_path, newline="") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row:
                    continue
                where = f"{self.rel(label_path)}:{lineno}"
                if len(row) != 2 + NUM_VOTES or not row[0].strip():
                    report.problem(where, f"malformed row: expected name, box and {NUM_VOTES} counts, got {row}")
                    continue
                votes = _votes(row[2:], report, where)
                if votes is None:
                    continue
                name = row[0].strip()
                image_path = self.require(folder / name, f"image named by {where}")
                if name in seen:
                    report.exclude("duplicate name")
                    continue
                seen.add(name)
                decision = target(votes, self.config.name)
                if decision.label is None:
                    report.exclude(decision.reason)
                    continue
                checked = self.check_image(report, image_path.read_bytes(), self.rel(image_path))
                if checked is not None:
                    yield self._example(report, checked, self.rel(image_path), decision, votes)

    # -- fer2013.csv + fer2013new.csv ---------------------------------------------------------
    def _pair(self, split: str) -> Iterator[tuple[str, dict]]:
        report = self.split_report(split)
        new_path, old_path = self.root / "fer2013new.csv", self.root / "fer2013.csv"
        seen: set[str] = set()
        with open(new_path, newline="") as fn, open(old_path, newline="") as fo:
            new_rows, old_rows = csv.reader(fn), csv.reader(fo)
            _check_header(next(new_rows, []), ["Usage", "Image name"], new_path)
            old_header = next(old_rows, [])
            _check_header(old_header, ["emotion", "pixels", "Usage"], old_path)
            pix, use = old_header.index("pixels"), old_header.index("Usage")
            for lineno, (new, old) in enumerate(itertools.zip_longest(new_rows, old_rows), start=2):
                if new is None or old is None:
                    longer = old_path if new is None else new_path
                    report.problem(
                        f"{self.rel(longer)}:{lineno}", "malformed file: the two CSV files differ in length"
                    )
                    break
                usage = new[0] if new else ""
                if len(new) != 2 + NUM_VOTES or usage not in USAGES.values():
                    # reported once, in the split the row claims (rows with an unknown Usage: in train)
                    if next((s for s, u in USAGES.items() if u == usage), "train") == split:
                        report.problem(f"{self.rel(new_path)}:{lineno}", f"malformed row: {new}")
                    continue
                if new[0] != USAGES[split]:
                    seen.add(new[1].strip())
                    continue
                name, where = new[1].strip(), f"{self.rel(new_path)}:{lineno}"
                if not name:
                    report.exclude("no image name (dropped by FER+)")
                    continue
                if name in seen:
                    report.exclude("duplicate name")
                    continue
                seen.add(name)
                votes = _votes(new[2:], report, where)
                if votes is None:
                    continue
                if len(old) <= max(pix, use) or old[use] != new[0]:
                    report.problem(f"{self.rel(old_path)}:{lineno}", f"malformed row: Usage differs from {where}")
                    continue
                decision = target(votes, self.config.name)
                if decision.label is None:
                    report.exclude(decision.reason)
                    continue
                checked = _pixels_to_image(old[pix])
                if checked is None:
                    report.problem(
                        f"{self.rel(old_path)}:{lineno}", f"malformed row: pixels are not {PIXELS} values 0..255"
                    )
                    continue
                yield self._example(report, checked, name, decision, votes)

    def _example(self, report: SplitReport, checked: CheckedImage, path: str, decision: Target, votes: list[int]):
        report.keep(FERPLUS_LABELS[decision.label])
        example = {"image": stored(checked, path), "label": decision.label, "votes": votes}
        if self.config.name == "probability":
            example["soft_label"] = list(decision.soft_label)
        return path, example


def _votes(fields: list[str], report: SplitReport, where: str) -> list[int] | None:
    try:
        votes = [int(v) for v in fields]
    except ValueError:
        votes = None
    if votes is None or len(votes) != NUM_VOTES or min(votes) < 0:
        report.problem(where, f"malformed row: vote counts must be {NUM_VOTES} integers >= 0, got {fields}")
        return None
    return votes


def _check_header(header: list[str], expected: list[str], path: Path) -> None:
    if not all(col in header for col in expected):
        raise DatasetLayoutError(
            f"{path}: header {header} lacks the columns {expected}\n{FerPlus.layout_text(path.parent)}"
        )


def _pixels_to_image(text: str) -> CheckedImage | None:
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        return None
    if values.size != PIXELS or values.min(initial=0) < 0 or values.max(initial=0) > 255:
        return None
    image = Image.fromarray(values.astype(np.uint8).reshape(48, 48), "L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return CheckedImage(image, buffer.getvalue())
