"""Figures for evaluation reports: confusion matrix and image grids (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    names: Sequence[str],
    path: str | Path,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Writes ``cm [C, C]`` (row = true class, column = predicted) as a PNG heat map.

    With ``normalize`` the colours and numbers are row-normalised (per-class recall on the
    diagonal) and the raw count is shown beneath; classes with no sample stay blank.
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise ValueError(f"Confusion matrix of shape {cm.shape} does not match {len(names)} class names")
    rows = cm.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        shown = np.where(rows > 0, cm / rows, np.nan) if normalize else cm.astype(np.float64)
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * n, 0.8 + 0.75 * n), dpi=120)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(1, cm.max()))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=list(names), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    threshold = np.nanmax(shown) / 2 if np.isfinite(shown).any() else 0.5
    for i in range(n):
        for j in range(n):
            if not np.isfinite(shown[i, j]):
                continue
            text = f"{shown[i, j]:.2f}\n{cm[i, j]}" if normalize else f"{cm[i, j]}"
            color = "white" if shown[i, j] > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    return _save(fig, path)


def save_image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    path: str | Path,
    columns: int = 5,
    title: str | None = None,
) -> Path:
    """Writes ``images`` (uint8 ``[H, W]`` or ``[H, W, 3]``) as a titled grid PNG."""
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    n = max(1, len(images))
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows + (0.4 if title else 0)), dpi=100)
    axes = np.atleast_1d(axes).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, image, text in zip(axes, images, titles):
        image = np.asarray(image)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(text, fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Lays out, writes and closes ``fig``; creates the parent folder."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
