"""The preparation report: what a builder kept, excluded and could not read, per split.

A builder fills one :class:`PreparationReport` while it streams the raw files; the report is
saved as ``preparation_report.json`` next to the prepared Arrow files, so a later call that hits
the cache can still show it (:func:`modeling.data.preparation_report`). ``format_table`` renders
it for the ``python -m modeling.data`` command.

The report also lists the cross-split exact duplicates (:mod:`modeling.data.duplicates`): per pair of
splits, test first, how many rows of one have the same decoded pixels as a row of the other, and
their file names. The search reads the prepared Arrow files, so it runs when a report without it is
first loaded (right after a preparation, or from a cache written before it existed) and is saved
back into the same ``preparation_report.json``. Evaluations read their duplicate mask from it
(:func:`saved_report`, :meth:`Duplicates.mask`) instead of searching again.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..cli import UserError

if TYPE_CHECKING:
    import datasets

    from .duplicates import Duplicate

logger = logging.getLogger(__name__)

REPORT_FILENAME = "preparation_report.json"
# Evaluation splits first: the pair (test, train) reads "test rows with a copy in train".
SPLIT_ORDER = ("test", "validation", "train")


class DatasetLayoutError(UserError, FileNotFoundError):
    """A label file, image folder or image named by a label line is missing."""


class DataQualityError(UserError, ValueError):
    """``strict=True`` and some items were corrupt, out of range or malformed."""


@dataclass
class Problem:
    """One item that could not be used: ``file`` is relative to ``data_dir`` (``file:line`` for label rows)."""

    file: str
    reason: str


@dataclass
class SplitReport:
    """Counts of one split. ``excluded`` counts protocol exclusions by reason; ``problems`` lists bad items."""

    kept: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    expected: int | None = None

    def keep(self, class_name: str | None) -> None:
        self.kept += 1
        if class_name is not None:
            self.class_counts[class_name] = self.class_counts.get(class_name, 0) + 1

    def exclude(self, reason: str) -> None:
        self.excluded[reason] = self.excluded.get(reason, 0) + 1

    def problem(self, file: str, reason: str) -> None:
        self.problems.append(Problem(file, reason))

    def problem_counts(self) -> dict[str, int]:
        return dict(Counter(_kind(p.reason) for p in self.problems))


def _kind(reason: str) -> str:
    """The first words of a problem message (``corrupt image: ...`` -> ``corrupt image``)."""
    return reason.split(":", 1)[0]


@dataclass
class DuplicateFile:
    """A row of ``split`` (``index``, ``file``) and the files of ``other`` holding the same pixels."""

    file: str
    index: int
    copies: list[str]


@dataclass
class DuplicatePair:
    """``count`` rows of ``split`` have an exact pixel copy among the rows of ``other`` (``other_count`` of them)."""

    split: str
    other: str
    count: int
    other_count: int
    files: list[DuplicateFile] = field(default_factory=list)


@dataclass
class Duplicates:
    """Cross-split exact duplicates: ``rows`` per split with a copy in any other split, and every pair of splits."""

    rows: dict[str, int]
    pairs: list[DuplicatePair]
    method: str = "md5 of the decoded uint8 pixels, modeling.data.duplicates.pixel_digest"

    @classmethod
    def from_found(cls, found: Mapping[str, Sequence[Duplicate]]) -> Duplicates:
        """From :func:`~modeling.data.duplicates.cross_split_duplicates`; evaluation splits first in each pair."""
        order = sorted(found, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
        pairs = []
        for i, split in enumerate(order):
            for other in reversed(order[i + 1 :]):  # test in train, test in validation, validation in train
                files = [
                    DuplicateFile(d.name, d.index, [row.name for row in d.copies[other]])
                    for d in found[split]
                    if other in d.copies
                ]
                other_count = sum(1 for d in found[other] if split in d.copies)
                pairs.append(DuplicatePair(split, other, len(files), other_count, files))
        return cls({split: len(found[split]) for split in order}, pairs)

    def mask(self, split: str, size: int) -> np.ndarray | None:
        """``[size]`` bool, True where row ``i`` of ``split`` has a copy in another split, as
        :func:`~modeling.data.duplicates.duplicate_mask` gives it; ``None`` when the report cannot tell.

        A pair lists the row indices of its first split only, so the rows of a split with copies in a split listed
        before it (train rows copied in test) are counted in ``rows`` but not named: then the union of the listed
        rows falls short of ``rows[split]`` and the answer is ``None``.
        """
        if split not in self.rows:
            return None
        indices = [f.index for pair in self.pairs if pair.split == split for f in pair.files]
        if any(not 0 <= i < size for i in indices):
            return None
        mask = np.zeros(size, dtype=bool)
        mask[indices] = True
        return mask if int(mask.sum()) == self.rows[split] else None

    @classmethod
    def from_dict(cls, d: dict) -> Duplicates:
        pairs = [DuplicatePair(**{**p, "files": [DuplicateFile(**f) for f in p["files"]]}) for p in d["pairs"]]
        return cls(dict(d["rows"]), pairs, d.get("method", cls.method))


@dataclass
class PreparationReport:
    """Everything ``python -m modeling.data`` prints; ``splits`` maps split name to :class:`SplitReport`."""

    dataset: str
    config: str
    class_names: list[str]
    splits: dict[str, SplitReport] = field(default_factory=dict)
    duplicates: Duplicates | None = None  # None: not searched yet (see find_duplicates)

    def split(self, name: str) -> SplitReport:
        return self.splits.setdefault(name, SplitReport())

    def describes(self, splits: Mapping[str, Sized]) -> bool:
        """Whether ``splits`` has the same split names and row counts as this report."""
        return {name: s.kept for name, s in self.splits.items()} == {name: len(rows) for name, rows in splits.items()}

    @property
    def problems(self) -> list[Problem]:
        return [p for s in self.splits.values() for p in s.problems]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreparationReport:
        splits = {
            name: SplitReport(
                kept=s["kept"],
                class_counts=dict(s["class_counts"]),
                excluded=dict(s["excluded"]),
                problems=[Problem(**p) for p in s["problems"]],
                expected=s.get("expected"),
            )
            for name, s in d["splits"].items()
        }
        duplicates = Duplicates.from_dict(d["duplicates"]) if d.get("duplicates") is not None else None
        return cls(
            dataset=d["dataset"],
            config=d["config"],
            class_names=list(d["class_names"]),
            splits=splits,
            duplicates=duplicates,
        )

    def save(self, directory: str | Path) -> Path:
        """Writes ``directory/preparation_report.json`` atomically (readers never see half a file)."""
        path = Path(directory) / REPORT_FILENAME
        partial = path.with_name(f".{REPORT_FILENAME}.{os.getpid()}")
        partial.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> PreparationReport:
        """The report in ``directory``; one without the duplicate search gets it now, saved back (best effort)."""
        report = cls.from_dict(json.loads((Path(directory) / REPORT_FILENAME).read_text()))
        if report.duplicates is None and report.find_duplicates(directory) is not None:
            try:
                report.save(directory)
            except OSError as e:  # a read-only cache: keep the result for this call only
                logger.warning("Could not save the duplicate search into %s: %s", directory, e)
        return report

    def find_duplicates(self, directory: str | Path) -> Duplicates | None:
        """Searches the prepared Arrow files in ``directory`` for cross-split pixel copies (``None``: no files)."""
        from .duplicates import cross_split_duplicates

        splits = _arrow_splits(directory, self.dataset)
        if not splits:
            return None
        logger.info("%s (%s): searching %d images for cross-split pixel copies (once, then cached in %s)",
                    self.dataset, self.config, sum(map(len, splits.values())), REPORT_FILENAME)  # fmt: skip
        self.duplicates = Duplicates.from_found(cross_split_duplicates(splits))
        return self.duplicates

    def raise_if_problems(self, limit: int = 20) -> None:
        """The ``strict=True`` check: one error listing (up to ``limit``) bad items by file name."""
        problems = self.problems
        if not problems:
            return
        lines = [f"  {p.file}: {p.reason}" for p in problems[:limit]]
        more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
        raise DataQualityError(
            f"{self.dataset} ({self.config}): {len(problems)} unusable item(s) and strict=True:\n"
            + "\n".join(lines)
            + more
        )


def saved_report(splits: Mapping[str, datasets.Dataset]) -> PreparationReport | None:
    """The report saved beside the Arrow files that ``splits`` were read whole from, each from its own split's files.

    ``None`` when a split is held in memory, was filtered, shuffled or selected (an indices mapping), was rewritten
    (``map``, ``flatten_indices``: other file names) or comes from another split's files, when the splits come from
    several cache folders, or when the folder holds no readable report. The file is read as saved: a report without
    the duplicate search does not run it here. Check :meth:`PreparationReport.describes` before using it.
    """
    files = {
        name: [Path(f["filename"]) for f in getattr(ds, "cache_files", None) or []] for name, ds in splits.items()
    }
    # _indices: datasets' mapping of rows that select/filter/shuffle leave on top of the Arrow file (no public name)
    if not all(files.values()) or any(getattr(ds, "_indices", None) is not None for ds in splits.values()):
        return None
    folders = {path.parent for paths in files.values() for path in paths}
    if len(folders) != 1 or not (report_path := folders.pop() / REPORT_FILENAME).is_file():
        return None
    try:
        report = PreparationReport.from_dict(json.loads(report_path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning("Ignoring the unreadable %s: %s", report_path, e)
        return None
    if any(_split_of(path.name, report.dataset) != name for name, paths in files.items() for path in paths):
        return None
    return report


def _split_of(filename: str, dataset: str) -> str | None:
    """The split of an Arrow file datasets wrote for ``dataset`` (``<dataset>-<split>[-k-of-n].arrow``), else None."""
    match = re.fullmatch(re.escape(dataset) + r"-(?P<split>\w+?)(?:-\d{5}-of-\d{5})?\.arrow", filename)
    return match["split"] if match else None


def _arrow_splits(directory: str | Path, dataset: str) -> dict:
    """``{split: Dataset}`` of the Arrow files datasets wrote in ``directory`` (``<dataset>-<split>[-k-of-n].arrow``)."""
    import datasets

    shards: dict[str, list[Path]] = {}
    for path in sorted(Path(directory).glob("*.arrow")):
        split = _split_of(path.name, dataset)
        if split is not None:
            shards.setdefault(split, []).append(path)
    return {
        split: datasets.concatenate_datasets([datasets.Dataset.from_file(str(p)) for p in paths])
        for split, paths in shards.items()
    }


def format_table(report: PreparationReport, max_problems: int = 50, max_duplicates: int | None = 5) -> str:
    """A plain-text table: one row per split with kept, per-class, excluded and unreadable counts.

    Then the cross-split exact duplicates, per pair of splits, with up to ``max_duplicates`` file names
    per pair (``None``: all of them).
    """
    splits = list(report.splits)
    header = ["", *splits]
    rows: list[list[str]] = [["kept", *(f"{report.splits[s].kept:,}" for s in splits)]]
    if any(report.splits[s].expected is not None for s in splits):
        rows.append(["expected", *(_fmt(report.splits[s].expected) for s in splits)])
    for name in report.class_names:
        rows.append([f"  {name}", *(str(report.splits[s].class_counts.get(name, 0)) for s in splits)])
    reasons = sorted({r for s in splits for r in report.splits[s].excluded})
    for reason in reasons:
        rows.append([f"excluded: {reason}", *(str(report.splits[s].excluded.get(reason, 0)) for s in splits)])
    kinds = sorted({k for s in splits for k in report.splits[s].problem_counts()})
    for kind in kinds:
        rows.append([f"unusable: {kind}", *(str(report.splits[s].problem_counts().get(kind, 0)) for s in splits)])
    if not kinds:
        rows.append(["unusable", *("0" for _ in splits)])
    if report.duplicates is not None:
        rows.append(["copies in other splits", *(_fmt(report.duplicates.rows.get(s)) for s in splits)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"{report.dataset} ({report.config})"]
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
    problems = report.problems
    if problems:
        lines.append(f"unusable items ({len(problems)}):")
        lines += [f"  {p.file}: {p.reason}" for p in problems[:max_problems]]
        if len(problems) > max_problems:
            lines.append(f"  ... and {len(problems) - max_problems} more (see {REPORT_FILENAME})")
    if report.duplicates is not None and report.duplicates.pairs:
        lines.append(f"cross-split exact duplicates ({report.duplicates.method}):")
        for pair in report.duplicates.pairs:
            kept = report.splits[pair.split].kept if pair.split in report.splits else None
            of = f" of {kept:,}" if kept is not None else ""
            lines.append(
                f"  {pair.split} in {pair.other}: {pair.count:,}{of} {pair.split} images have a copy "
                f"({pair.other_count:,} {pair.other} images)"
            )
            shown = pair.files if max_duplicates is None else pair.files[:max_duplicates]
            lines += [f"    {f.file} = {', '.join(f.copies)}" for f in shown]
            if len(shown) < len(pair.files):
                lines.append(f"    ... and {len(pair.files) - len(shown)} more (see {REPORT_FILENAME})")
    return "\n".join(lines)


def _fmt(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"
