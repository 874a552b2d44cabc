"""The preparation report: what a builder kept, excluded and could not read, per split.

A builder fills one :class:`PreparationReport` while it streams the raw files; the report is
saved as ``preparation_report.json`` next to the prepared Arrow files, so a later call that hits
the cache can still show it (:func:`modeling.data.preparation_report`). ``format_table`` renders
it for the ``python -m modeling.data`` command.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..cli import UserError

REPORT_FILENAME = "preparation_report.json"


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
class PreparationReport:
    """Everything ``python -m modeling.data`` prints; ``splits`` maps split name to :class:`SplitReport`."""

    dataset: str
    config: str
    class_names: list[str]
    splits: dict[str, SplitReport] = field(default_factory=dict)

    def split(self, name: str) -> SplitReport:
        return self.splits.setdefault(name, SplitReport())

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
        return cls(dataset=d["dataset"], config=d["config"], class_names=list(d["class_names"]), splits=splits)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / REPORT_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> PreparationReport:
        return cls.from_dict(json.loads((Path(directory) / REPORT_FILENAME).read_text()))

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


def format_table(report: PreparationReport, max_problems: int = 50) -> str:
    """A plain-text table: one row per split with kept, per-class, excluded and unreadable counts."""
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
    return "\n".join(lines)


def _fmt(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"
