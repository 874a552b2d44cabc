"""Temporary alias of modeling.precision while work in progress still imports this path; removed in this change."""

import sys

from .. import precision as _precision

sys.modules[__name__] = _precision
