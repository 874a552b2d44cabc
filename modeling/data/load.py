"""One entry point for every FER dataset: :func:`load_fer_dataset` and :func:`preparation_report`.

The report of a preparation is saved as ``preparation_report.json`` in the prepared dataset's
cache folder (next to the Arrow files and ``dataset_info.json``), so it survives cache hits;
:func:`preparation_report` returns it as a :class:`~modeling.data.report.PreparationReport`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
from datasets.exceptions import DatasetGenerationError

from ..cli import UsageError, did_you_mean
from .affectnet import AffectNet
from .base import FerBuilder
from .ferplus import FerPlus
from .imagefolder import FaceFolder
from .rafdb import RafDb
from .report import REPORT_FILENAME, DataQualityError, DatasetLayoutError, PreparationReport

logger = logging.getLogger(__name__)

BUILDERS: dict[str, type[FerBuilder]] = {
    "rafdb": RafDb,
    "affectnet": AffectNet,
    "ferplus": FerPlus,
    "imagefolder": FaceFolder,
}


def fer_builder(
    name: str,
    data_dir: str | Path,
    config: str | None = None,
    cache_dir: str | Path | None = None,
    strict: bool = False,
    **builder_kwargs,
) -> FerBuilder:
    """The builder instance for ``name`` (not prepared yet); ``builder_kwargs`` set config fields (``align=True``)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in BUILDERS:
        raise UsageError(
            f"unknown FER dataset {name!r}; choose one of {sorted(BUILDERS)}{did_you_mean(key, BUILDERS)}"
        )
    return BUILDERS[key](
        data_dir=data_dir, cache_dir=cache_dir, config_name=None if config is None else str(config), strict=strict,
        **builder_kwargs,
    )  # fmt: skip


def _download_and_prepare(builder: FerBuilder, **kwargs) -> None:
    """``builder.download_and_prepare`` with our own errors unwrapped from datasets' generation error."""
    try:
        builder.download_and_prepare(**kwargs)
    except DatasetGenerationError as e:
        if isinstance(e.__cause__, (DatasetLayoutError, DataQualityError)):
            raise e.__cause__ from None
        raise


def _prepare(builder: FerBuilder) -> PreparationReport:
    _download_and_prepare(builder)
    path = Path(builder.cache_dir) / REPORT_FILENAME
    if not path.exists():  # a cache prepared by other means: rebuild once so the report exists
        logger.warning("No %s in %s; preparing %s again", REPORT_FILENAME, builder.cache_dir, builder.DATASET)
        _download_and_prepare(builder, download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD)
    report = PreparationReport.load(builder.cache_dir)
    for split, counts in report.splits.items():
        if counts.expected is not None and counts.kept != counts.expected:
            logger.warning(
                "%s (%s) split %r has %d examples; the official size is %d",
                report.dataset, report.config, split, counts.kept, counts.expected,
            )  # fmt: skip
        if counts.problems:
            logger.warning(
                "%s (%s) split %r: %d unusable item(s), e.g. %s: %s (see preparation_report())",
                report.dataset, report.config, split, len(counts.problems), counts.problems[0].file,
                counts.problems[0].reason,
            )  # fmt: skip
    if builder.strict:  # a cache prepared earlier without strict still carries its problems
        report.raise_if_problems()
    return report


def load_fer_dataset(
    name: str,
    data_dir: str | Path,
    config: str | None = None,
    cache_dir: str | Path | None = None,
    strict: bool = False,
    **builder_kwargs,
) -> datasets.DatasetDict:
    """Prepare (or reuse from ``cache_dir``) dataset ``name`` from the raw files in ``data_dir``.

    ``name``: ``rafdb`` (configs ``aligned``/``original``), ``affectnet`` (``8``/``7``; kwargs
    ``align``, ``image_format``), ``ferplus`` (``majority``/``probability``/``plurality``) or
    ``imagefolder`` (kwarg ``labels``). ``strict=True`` raises :class:`DataQualityError` when any
    item is corrupt, out of range or malformed, instead of counting it in the report.
    """
    return load_with_report(name, data_dir, config, cache_dir, strict, **builder_kwargs)[0]


def load_with_report(
    name: str,
    data_dir: str | Path,
    config: str | None = None,
    cache_dir: str | Path | None = None,
    strict: bool = False,
    **builder_kwargs,
) -> tuple[datasets.DatasetDict, PreparationReport]:
    """:func:`load_fer_dataset` and :func:`preparation_report` in one preparation."""
    builder = fer_builder(name, data_dir, config, cache_dir, strict, **builder_kwargs)
    report = _prepare(builder)
    return builder.as_dataset(), report


def preparation_report(
    name: str,
    data_dir: str | Path,
    config: str | None = None,
    cache_dir: str | Path | None = None,
    **builder_kwargs,
) -> PreparationReport:
    """The report of the prepared dataset (preparing it first if the cache lacks it)."""
    return _prepare(fer_builder(name, data_dir, config, cache_dir, False, **builder_kwargs))
