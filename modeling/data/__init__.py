"""Dataset builders for RAF-DB, AffectNet, FER+ and plain image folders (see :func:`load_fer_dataset`)."""

from .load import BUILDERS, fer_builder, load_fer_dataset, preparation_report
from .report import DataQualityError, DatasetLayoutError, PreparationReport, format_table

__all__ = [
    "BUILDERS",
    "DataQualityError",
    "DatasetLayoutError",
    "PreparationReport",
    "fer_builder",
    "format_table",
    "load_fer_dataset",
    "preparation_report",
]
