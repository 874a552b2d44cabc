"""The common ``GeneratorBasedBuilder`` of the FER datasets: layout errors, image checks, the report.

Subclasses define ``_info``-level facts as class attributes (``DATASET``, ``LAYOUT``,
``EXPECTED_SIZES``), ``class_names()``, ``label_files()``, ``_split_generators`` and
``_generate_examples``. The base class

* refuses a missing ``data_dir`` in one line, missing files with the expected layout in the message,
* finds the dataset in a subfolder of ``data_dir`` where the download unpacks into one (``locate``),
* keys the cache on the label files' sizes and modification times (``hash``), so editing a label
  file re-prepares while a second identical call reuses the Arrow files,
* collects a :class:`~modeling.data.report.PreparationReport` while the generator streams and
  writes it beside the Arrow files (atomically, inside datasets' temporary output folder),
* turns unusable items into one error at the end of a split when ``strict=True``.

datasets >= 4 refuses loading scripts, so builders are instantiated directly (NOTES #9).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import datasets

from .images import CheckedImage, ImageDecodeError, decode
from .report import DatasetLayoutError, PreparationReport, SplitReport

logger = logging.getLogger(__name__)

# Bump when a builder's output for the same raw files changes, so that old caches are not reused.
CODE_VERSION = "1"
# The packed FER+ splits that modeling.data.ferplus_layout unpacks.
PACKED_FERPLUS = "*_images.npz"


def packed_ferplus_hint(root: Path) -> str:
    """A line for layout errors when ``root`` holds this project's packed FER+ (``train_images.npz``, ...; the copy
    in ``../shared/data/ferplus``), which no builder reads: the converter writes the official layout from it."""
    packed = sorted(path.name for path in Path(root).glob(PACKED_FERPLUS))
    if not packed:
        return ""
    return (
        f"{root} holds this project's packed FER+ ({', '.join(packed)}), not a layout the builders read: write the "
        f"official one with `python -m modeling.data.ferplus_layout {root} DEST`, then pass --data_dir DEST\n"
    )


class FerBuilder(datasets.GeneratorBasedBuilder):
    DATASET: str = ""
    LAYOUT: str = ""  # human-readable description of the expected files, shown in layout errors
    EXPECTED_SIZES: dict[str, dict[str, int]] = {}  # config name -> split -> official size
    DEFAULT_WRITER_BATCH_SIZE = 100  # rows held in memory before an Arrow write: keeps memory flat

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        config_name: str | None = None,
        strict: bool = False,
        **config_kwargs,
    ):
        given = Path(data_dir).expanduser().resolve()
        if not given.is_dir():  # one line: the layout is no help for a mistyped path
            raise DatasetLayoutError(f"{self.DATASET} data_dir not found: {given} is not a directory")
        root = self.locate(given)
        if root != given:
            logger.info("%s: reading %s (found inside data_dir %s)", self.DATASET, root, given)
        self.strict = strict
        self.report: PreparationReport | None = None
        super().__init__(
            cache_dir=None if cache_dir is None else str(cache_dir),
            dataset_name=self.DATASET,
            config_name=config_name,
            data_dir=str(root),
            hash=self.fingerprint(root),
            **config_kwargs,
        )

    # -- facts subclasses provide -------------------------------------------------------------
    @classmethod
    def locate(cls, data_dir: Path) -> Path:
        """The folder that holds the dataset's files: ``data_dir`` itself unless a subclass knows better (an
        archive that unpacks into a subfolder)."""
        return data_dir

    def class_names(self) -> list[str] | None:
        raise NotImplementedError

    @classmethod
    def label_files(cls, root: Path) -> list[Path]:
        """The label files (present ones) whose size and mtime key the cache."""
        raise NotImplementedError

    # -- shared behaviour ---------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.config.data_dir)

    @classmethod
    def layout_text(cls, root: Path) -> str:
        """The expected files, after a line naming the converter when ``root`` holds the packed FER+ instead."""
        return packed_ferplus_hint(root) + f"Expected {cls.DATASET} layout under {root}:\n{cls.LAYOUT}"

    @classmethod
    def fingerprint(cls, root: Path) -> str:
        h = hashlib.sha1(f"{cls.DATASET}:{CODE_VERSION}".encode())
        for path in sorted(cls.label_files(root)):
            st = path.stat()
            h.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    def require(self, path: Path, what: str) -> Path:
        """``path`` if it exists, else one :class:`DatasetLayoutError` naming it and the layout."""
        if not path.exists():
            raise DatasetLayoutError(f"{what} not found: {path}\n{self.layout_text(self.root)}")
        return path

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def read_image(self, path: Path, named_by: str) -> bytes:
        """Bytes of an image a label line names; a missing file is a layout error, not a skipped item."""
        self.require(path, f"image named by {named_by}")
        return path.read_bytes()

    def check_image(self, split: SplitReport, data: bytes, name: str) -> CheckedImage | None:
        """Fully decoded image, or ``None`` after recording ``name`` as corrupt in the split report."""
        try:
            return decode(data)
        except ImageDecodeError as e:
            split.problem(name, f"corrupt image: {e}")
            return None

    def split_report(self, split: str) -> SplitReport:
        if self.report is None:  # _generate_examples called outside download_and_prepare (tests)
            self.report = self.new_report()
        report = self.report.split(split)
        report.expected = self.EXPECTED_SIZES.get(self.config.name, {}).get(split)
        return report

    def finish_split(self, split: str) -> None:
        """End of a split's generator: log it and apply ``strict``."""
        report = self.report.split(split)
        logger.info("%s/%s %s: kept %d, excluded %s, unusable %d", self.DATASET, self.config.name, split,
                    report.kept, report.excluded, len(report.problems))  # fmt: skip
        if self.strict:
            PreparationReport(self.DATASET, self.config.name, [], {split: report}).raise_if_problems()

    def new_report(self) -> PreparationReport:
        return PreparationReport(self.DATASET, self.config.name, list(self.class_names() or []))

    def image_feature(self) -> datasets.Image:
        return datasets.Image(mode="RGB")

    def label_feature(self) -> datasets.ClassLabel:
        return datasets.ClassLabel(names=list(self.class_names()))

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        self.report = self.new_report()
        super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        # self._output_dir is datasets' temporary folder here: the report lands with the Arrow files.
        self.report.save(self._output_dir)
