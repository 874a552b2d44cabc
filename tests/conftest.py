"""Shared fixtures: where the real FER+ data lives, and how its absence is handled.

Tests that need ``../shared/data`` skip with a clear reason when it is absent, and fail
under ``CI=true``, where the data is always laid beside the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FERPLUS_DIR = SHARED_DATA / "ferplus"


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"real FER+ data not found at {path} (see ../shared/data/README.md)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI=true requires it")
    pytest.skip(message)


@pytest.fixture(scope="session")
def ferplus_dir() -> Path:
    """``../shared/data/ferplus``: packed full splits, ``labels/`` and ``mini/``."""
    return _require(FERPLUS_DIR)


@pytest.fixture(scope="session")
def ferplus_mini_dir() -> Path:
    """``../shared/data/ferplus/mini``: 256 images in the official FER+ folder layout."""
    return _require(FERPLUS_DIR / "mini")


@pytest.fixture(scope="session")
def ferplus_faces(ferplus_dir: Path):
    """A few hundred real 48x48 grayscale faces (uint8 ``[N, 48, 48]``) with their names, from the valid split."""
    import numpy as np

    with np.load(ferplus_dir / "valid_images.npz") as z:
        return z["images"][:512].copy(), [str(n) for n in z["names"][:512]]
