"""AffectNet (Mollahosseini et al. 2017) as a ``DatasetDict`` with splits ``train`` and ``validation``.

The literature reports results on the official validation set (500 images per class), used as
the test set. Two releases are read:

* the manual-annotation release: ``Manually_Annotated_file_lists/{training,validation}.csv``
  (header line optional; columns ``subDirectory_filePath, face_x, face_y, face_width,
  face_height, facial_landmarks, expression, valence, arousal``; landmarks as 136 numbers
  ``x1;y1;x2;y2;...``), images under ``Manually_Annotated_Images/``; the face is cropped to the box;
* the newer cropped release: ``train_set/`` and ``val_set/``, each with ``images/N.jpg`` and
  ``annotations/N_exp.npy`` (plus ``N_val.npy``, ``N_aro.npy``, ``N_lnd.npy`` when present).

Configs ``8`` (expressions 0..7) and ``7`` (0..6, contempt excluded); expressions 8..10 (none,
uncertain, non-face) are excluded and counted. Config fields: ``align=True`` rotates each image
about the eye midpoint so that the eyes are level (68 landmarks) before cropping;
``image_format`` (``png`` lossless, or ``jpeg``) encodes crops.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from ..labels import AFFECTNET7_LABELS, AFFECTNET8_LABELS, AFFECTNET_NON_EMOTIONS
from .base import FerBuilder
from .images import align_eyes, crop_box, encode, stored

LISTS = "Manually_Annotated_file_lists"
IMAGES = "Manually_Annotated_Images"
CSV_FILES = {"train": "training.csv", "validation": "validation.csv"}
CROPPED = {"train": "train_set", "validation": "val_set"}
HEADER = "subDirectory_filePath"
NUM_COLUMNS = 9


@dataclass
class AffectNetConfig(datasets.BuilderConfig):
    align: bool = False
    image_format: str = "png"


class AffectNet(FerBuilder):
    DATASET = "affectnet"
    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = AffectNetConfig
    BUILDER_CONFIGS = [AffectNetConfig(name=n, version=datasets.Version("1.0.0")) for n in ("8", "7")]
    DEFAULT_CONFIG_NAME = "8"
    LAYOUT = (
        f"  {LISTS}/training.csv and {LISTS}/validation.csv (columns {HEADER},face_x,face_y,face_width,\n"
        f"    face_height,facial_landmarks,expression,valence,arousal; header optional) with images under {IMAGES}/\n"
        "  or train_set/ and val_set/, each with images/N.jpg and annotations/N_exp.npy (N_val/N_aro/N_lnd.npy)"
    )
    # Counts of the manual annotations: 8 classes 287,651 / 4,000; 7 classes 283,901 / 3,500.
    EXPECTED_SIZES = {"8": {"train": 287651, "validation": 4000}, "7": {"train": 283901, "validation": 3500}}

    def class_names(self) -> list[str]:
        return list(AFFECTNET7_LABELS if self.config.name == "7" else AFFECTNET8_LABELS)

    @classmethod
    def label_files(cls, root: Path) -> list[Path]:
        files = [root / LISTS / f for f in CSV_FILES.values()]
        files += [root / d / "annotations" for d in CROPPED.values()]  # folder mtime changes with its entries
        return [p for p in files if p.exists()]

    def _info(self) -> datasets.DatasetInfo:
        features = datasets.Features(
            {
                "image": self.image_feature(),
                "label": self.label_feature(),
                "valence": datasets.Value("float32"),
                "arousal": datasets.Value("float32"),
            }
        )
        return datasets.DatasetInfo(description="AffectNet (manual annotations)", features=features)

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        if (self.root / LISTS).exists() or not any((self.root / d).exists() for d in CROPPED.values()):
            for name in CSV_FILES.values():
                self.require(self.root / LISTS / name, "label file")
            self.require(self.root / IMAGES, "image folder")
            release = "manual"
        else:
            for d in CROPPED.values():
                self.require(self.root / d / "annotations", "label folder")
                self.require(self.root / d / "images", "image folder")
            release = "cropped"
        return [
            datasets.SplitGenerator(
                name=getattr(datasets.Split, s.upper()), gen_kwargs={"split": s, "release": release}
            )
            for s in CSV_FILES
        ]

    def _generate_examples(self, split: str, release: str) -> Iterator[tuple[str, dict]]:
        rows = self._manual_rows(split) if release == "manual" else self._cropped_rows(split)
        report = self.split_report(split)
        for where, image_path, box, landmarks, expression, valence, arousal in rows:
            reason = self._exclusion(expression)
            if reason == "out of range":
                report.problem(where, f"label out of range: expression {expression} (expected 0..10)")
                continue
            if reason is not None:
                report.exclude(reason)
                continue
            rel = self.rel(image_path)
            checked = self.check_image(report, self.read_image(image_path, where), rel)
            if checked is None:
                continue
            try:
                image = self._face(checked, rel, box, landmarks)
            except ValueError as e:
                report.problem(where, f"bad face box or landmarks: {e}")
                continue
            report.keep(self.class_names()[expression])
            yield rel, {"image": image, "label": expression, "valence": valence, "arousal": arousal}
        self.finish_split(split)

    def _exclusion(self, expression: int) -> str | None:
        if 0 <= expression < len(self.class_names()):
            return None
        if expression == 7:
            return "contempt"
        if 8 <= expression <= 10:
            return AFFECTNET_NON_EMOTIONS[expression - 8]
        return "out of range"

    def _face(self, checked, path: str, box, landmarks) -> dict:
        """The stored face: original bytes for an uncropped unaligned image, else an encoded crop."""
        image = checked.image
        if self.config.align:
            if landmarks is None:
                raise ValueError("align=True needs the 68 landmarks")
            image = align_eyes(image, landmarks)
        if box is not None:
            image = crop_box(image, *box)
        if image is checked.image:
            return stored(checked, path, self.config.image_format)
        return {"bytes": encode(image, self.config.image_format), "path": path}

    def _manual_rows(self, split: str) -> Iterator[tuple]:
        report = self.split_report(split)
        csv_path = self.root / LISTS / CSV_FILES[split]
        with open(csv_path, newline="") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or (lineno == 1 and row[0].strip() == HEADER):
                    continue
                where = f"{self.rel(csv_path)}:{lineno}"
                try:
                    if len(row) != NUM_COLUMNS:
                        raise ValueError(f"expected {NUM_COLUMNS} columns, got {len(row)}")
                    box = tuple(float(v) for v in row[1:5])
                    landmarks = _landmarks(row[5]) if self.config.align else None
                    expression, valence, arousal = int(row[6]), float(row[7]), float(row[8])
                except ValueError as e:
                    report.problem(where, f"malformed row: {e}")
                    continue
                yield where, self.root / IMAGES / row[0].strip(), box, landmarks, expression, valence, arousal

    def _cropped_rows(self, split: str) -> Iterator[tuple]:
        report = self.split_report(split)
        folder = self.root / CROPPED[split]
        ids = sorted((p.name[: -len("_exp.npy")] for p in (folder / "annotations").glob("*_exp.npy")), key=_natural)
        for n in ids:
            where = f"{CROPPED[split]}/annotations/{n}_exp.npy"
            try:
                expression = int(_npy_scalar(folder / "annotations" / f"{n}_exp.npy"))
                valence, arousal = (_optional(folder / "annotations" / f"{n}_{k}.npy") for k in ("val", "aro"))
                lnd = folder / "annotations" / f"{n}_lnd.npy"
                landmarks = (
                    _landmarks(np.load(lnd, allow_pickle=False)) if self.config.align and lnd.exists() else None
                )
            except (ValueError, OSError) as e:
                report.problem(where, f"malformed annotation: {e}")
                continue
            yield where, folder / "images" / f"{n}.jpg", None, landmarks, expression, valence, arousal


def _natural(stem: str) -> tuple:
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _npy_scalar(path: Path) -> float:
    value = np.load(path, allow_pickle=False)
    return float(np.asarray(value).reshape(-1)[0].item())


def _optional(path: Path) -> float | None:
    return _npy_scalar(path) if path.exists() else None


def _landmarks(value) -> np.ndarray:
    """68 ``(x, y)`` points from ``"x1;y1;..."`` or any array of 136 numbers."""
    if isinstance(value, str):
        value = [float(v) for v in value.split(";") if v.strip()]
    points = np.asarray(value, dtype=np.float64).reshape(-1)
    if points.size != 136:
        raise ValueError(f"expected 136 landmark coordinates, got {points.size}")
    return points.reshape(68, 2)
