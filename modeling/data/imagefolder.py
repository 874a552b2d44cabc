"""Any folder tree of face images (e.g. the user's own faces for MAE pretraining).

Splits: when ``data_dir`` holds ``train/``, ``validation/`` (or ``val/``, ``valid/``) and/or
``test/`` folders, each one is a split; otherwise the whole tree is the ``train`` split.

Labels: with ``labels=None`` (the default) a split's first-level folders are the class names
(sorted, as found; images deeper down belong to their first-level folder) when every image lies
inside one; if any image sits directly in a split folder, the dataset has no ``label`` column
(only ``image``), which is what MAE pretraining needs. ``labels=True`` demands class folders
(an image outside them is a layout error); ``labels=False`` never adds the column.
Files without an image extension are skipped and counted.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets

from .base import CODE_VERSION, FerBuilder
from .images import stored
from .report import DatasetLayoutError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLIT_FOLDERS = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
}


@dataclass
class FaceFolderConfig(datasets.BuilderConfig):
    labels: bool | None = None


def _files(folder: Path) -> list[Path]:
    """All files below ``folder`` in a deterministic order (hidden entries skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return found


class FaceFolder(FerBuilder):
    DATASET = "imagefolder"
    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = FaceFolderConfig
    BUILDER_CONFIGS = [FaceFolderConfig(name="default", version=datasets.Version("1.0.0"))]
    DEFAULT_CONFIG_NAME = "default"
    LAYOUT = (
        "  any tree of images (" + ", ".join(sorted(EXTENSIONS)) + "), optionally split into train/, validation/\n"
        "  (or val/, valid/) and test/; first-level folders of a split are class names when every image is in one"
    )

    @classmethod
    def fingerprint(cls, root: Path) -> str:
        # No label file: the cache is keyed on every file's path, size and modification time.
        h = hashlib.sha1(f"{cls.DATASET}:{CODE_VERSION}".encode())
        for path in _files(root):
            st = path.stat()
            h.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    @classmethod
    def label_files(cls, root: Path) -> list[Path]:
        return []

    def split_folders(self) -> dict[str, Path]:
        found = {}
        for entry in sorted(self.root.iterdir()):
            split = SPLIT_FOLDERS.get(entry.name.lower())
            if entry.is_dir() and split is not None and split not in found:
                found[split] = entry
        return found or {"train": self.root}

    def _class_layout(self) -> tuple[list[str] | None, str | None]:
        """Sorted class names (or ``None``) and, when labels are impossible, an image outside class folders."""
        names: set[str] = set()
        loose = None
        for folder in self.split_folders().values():
            for path in _files(folder):
                if path.suffix.lower() not in EXTENSIONS:
                    continue
                parts = path.relative_to(folder).parts
                if len(parts) == 1:
                    loose = loose or self.rel(path)
                else:
                    names.add(parts[0])
        return (sorted(names) if names and loose is None else None), loose

    def class_names(self) -> list[str] | None:
        if not hasattr(self, "_classes"):
            names, loose = self._class_layout()
            if self.config.labels and names is None:
                raise DatasetLayoutError(
                    f"labels=True but {loose or 'no image'} is not inside a class folder\n{self.layout_text(self.root)}"
                )
            self._classes = None if self.config.labels is False else names
        return self._classes

    def _info(self) -> datasets.DatasetInfo:
        features = {"image": self.image_feature()}
        if self.class_names() is not None:
            features["label"] = self.label_feature()
        return datasets.DatasetInfo(description="Face images from a folder tree", features=datasets.Features(features))

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        folders = self.split_folders()
        if not any(path.suffix.lower() in EXTENSIONS for folder in folders.values() for path in _files(folder)):
            # else datasets fails later on the empty split with a traceback ("corresponds to no data")
            raise DatasetLayoutError(f"no image found under {self.root}\n{self.layout_text(self.root)}")
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"split": split, "folder": folder})
            for split, folder in folders.items()
        ]

    def _generate_examples(self, split: str, folder: Path) -> Iterator[tuple[str, dict]]:
        report = self.split_report(split)
        classes = self.class_names()
        for path in _files(folder):
            if path.suffix.lower() not in EXTENSIONS:
                report.exclude("not an image file")
                continue
            rel = self.rel(path)
            checked = self.check_image(report, path.read_bytes(), rel)
            if checked is None:
                continue
            example = {"image": stored(checked, rel)}
            if classes is not None:
                name = path.relative_to(folder).parts[0]
                example["label"] = classes.index(name)
            report.keep(None if classes is None else name)
            yield rel, example
        self.finish_split(split)
