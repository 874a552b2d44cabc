"""Dataset builders for RAF-DB, AffectNet, FER+ and plain image folders (see :func:`load_fer_dataset`)."""

from .duplicates import cross_split_duplicates, duplicate_mask, find_duplicate_mask, pixel_digest
from .load import BUILDERS, fer_builder, load_fer_dataset, preparation_report
from .report import DataQualityError, DatasetLayoutError, PreparationReport, format_table

__all__ = [
    "BUILDERS",
    "DataQualityError",
    "DatasetLayoutError",
    "PreparationReport",
    "cross_split_duplicates",
    "duplicate_mask",
    "fer_builder",
    "find_duplicate_mask",
    "format_table",
    "load_fer_dataset",
    "pixel_digest",
    "preparation_report",
]
