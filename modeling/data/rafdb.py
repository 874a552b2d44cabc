"""RAF-DB basic (Li et al., CVPR 2017) as a ``DatasetDict`` with splits ``train`` and ``test``.

Files as the owners hand them out: ``EmoLabel/list_patition_label.txt`` (sic), one line
``train_00001.jpg 5`` per image, labels 1..7 = surprise, fear, disgust, happiness, sadness,
anger, neutral; images ``Image/aligned/train_00001_aligned.jpg`` (100x100, config ``aligned``,
the default) or ``Image/original/train_00001.jpg`` (config ``original``). The archive unpacks into
``basic/``: ``data_dir`` may be that folder or the one holding it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import datasets

from ..labels import RAFDB_LABELS
from .base import FerBuilder
from .images import stored

LABEL_FILE = "EmoLabel/list_patition_label.txt"
SUBFOLDER = "basic"  # the owners' archive: basic/EmoLabel/..., basic/Image/...
SPLITS = ("train", "test")


class RafDb(FerBuilder):
    DATASET = "rafdb"
    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIGS = [
        datasets.BuilderConfig(name="aligned", version=datasets.Version("1.0.0")),
        datasets.BuilderConfig(name="original", version=datasets.Version("1.0.0")),
    ]
    DEFAULT_CONFIG_NAME = "aligned"
    LAYOUT = (
        f"  (in data_dir or in its {SUBFOLDER}/ folder)\n"
        f"  {LABEL_FILE}: lines 'train_00001.jpg 5' (labels 1..7 = {', '.join(RAFDB_LABELS)})\n"
        "  Image/aligned/train_00001_aligned.jpg (config 'aligned') or Image/original/train_00001.jpg ('original')"
    )
    EXPECTED_SIZES = {c: {"train": 12271, "test": 3068} for c in ("aligned", "original")}

    def class_names(self) -> list[str]:
        return list(RAFDB_LABELS)

    @classmethod
    def locate(cls, data_dir: Path) -> Path:
        if not (data_dir / LABEL_FILE).is_file() and (data_dir / SUBFOLDER / LABEL_FILE).is_file():
            return data_dir / SUBFOLDER
        return data_dir

    @classmethod
    def label_files(cls, root: Path) -> list[Path]:
        return [p for p in [root / LABEL_FILE] if p.is_file()]

    def _info(self) -> datasets.DatasetInfo:
        features = datasets.Features({"image": self.image_feature(), "label": self.label_feature()})
        return datasets.DatasetInfo(description="RAF-DB basic emotions", features=features)

    def image_path(self, name: str) -> Path:
        if self.config.name == "aligned":
            stem, _, suffix = name.rpartition(".")
            return self.root / "Image" / "aligned" / f"{stem}_aligned.{suffix}"
        return self.root / "Image" / "original" / name

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        self.require(self.root / LABEL_FILE, "label file")
        self.require(self.root / "Image" / self.config.name, "image folder")
        return [
            datasets.SplitGenerator(name=getattr(datasets.Split, s.upper()), gen_kwargs={"split": s}) for s in SPLITS
        ]

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
        report = self.split_report(split)
        label_path = self.root / LABEL_FILE
        with open(label_path) as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                where = f"{LABEL_FILE}:{lineno}"
                name = fields[0]
                owner = name.split("_", 1)[0]
                if owner not in SPLITS:
                    if split == "train":  # reported once
                        report.problem(where, f"malformed row: name must start with train_ or test_, got {line!r}")
                    continue
                if owner != split:
                    continue
                if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                    report.problem(where, f"malformed row: expected '<name> <label 1..7>', got {line.strip()!r}")
                    continue
                label = int(fields[1])
                if not 1 <= label <= len(RAFDB_LABELS):
                    report.problem(where, f"label out of range: {label} (expected 1..{len(RAFDB_LABELS)})")
                    continue
                path = self.image_path(name)
                checked = self.check_image(report, self.read_image(path, where), self.rel(path))
                if checked is None:
                    continue
                report.keep(RAFDB_LABELS[label - 1])
                yield name, {"image": stored(checked, self.rel(path)), "label": label - 1}
        self.finish_split(split)
