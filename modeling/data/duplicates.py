"""Exact pixel copies across the splits of a dataset: test faces that also sit in train or validation.

FER+ holds such copies: 244 of the 3,137 majority-protocol test faces have the pixels of one of the
28,558 images of the training folder (NOTES #24), so a test accuracy computed on every face partly
measures recall of training images. :func:`cross_split_duplicates` finds, for each split, the rows
whose pixels equal those of a row of another split; evaluations report their metrics on all rows and
on the rows without such a copy (:func:`duplicate_mask`).

What is hashed (:func:`pixel_digest`): the image decoded by PIL (no EXIF rotation applied), as a
uint8 array in its own mode when that is 8-bit grayscale ``L`` (``[H, W]``) or ``RGB``
(``[H, W, 3]``); any other mode is first converted as the builders convert it when they store it
(:func:`~modeling.data.images.to_rgb`). A uint8 array is taken as is (``[H, W, 1]`` as ``[H, W]``).
The digest is ``"<shape>:<md5>"``, e.g. ``"48x48:9f1c..."``: the md5 of the C-order pixel bytes
(``hashlib.md5(pixels.tobytes())``, as NOTES #24 and ``experiments/peers.py`` hash the packed FER+ arrays),
prefixed with the shape so that equal bytes in different shapes never match. So a PNG and a lossless
re-encoding of the same pixels match, and so does the packed array they came from; a grayscale face
and its RGB copy (three equal channels) do not, nor does a JPEG re-encoding (new pixels).

Each image is decoded once: FER+ (35,710 faces of 48x48) takes a few seconds on one core.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import datasets
import numpy as np
from PIL import Image

from .images import decode, to_rgb

if TYPE_CHECKING:
    from .report import PreparationReport

logger = logging.getLogger(__name__)

# Above this many images in all splits together, find_duplicate_mask skips the search (AffectNet's
# ~290k faces take minutes to decode); the preparation report still holds it, computed once, and
# find_duplicate_mask reads it from there when given the report.
MAX_IMAGES = 100_000

# An image as this project's datasets hold it: {"bytes", "path"} (the Image feature undecoded), raw
# file bytes, a file path, a PIL image or a uint8 array.
ImageLike = Any


class Row(NamedTuple):
    """One row of a split: its index and its name (the stored ``path``, else ``#<index>``)."""

    index: int
    name: str


@dataclass(frozen=True)
class Duplicate:
    """A row whose pixels equal those of rows in other splits: ``copies`` maps each such split to them."""

    index: int
    name: str
    copies: dict[str, tuple[Row, ...]]


def image_pixels(image: ImageLike) -> np.ndarray:
    """The uint8 pixels that :func:`pixel_digest` hashes: ``[H, W]`` for grayscale, ``[H, W, 3]`` for RGB."""
    if isinstance(image, (np.ndarray, list)):
        pixels = np.asarray(image)
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[..., 0]
        if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
            raise ValueError(f"expected uint8 pixels [H, W] or [H, W, 3], got {pixels.dtype} {pixels.shape}")
        return np.ascontiguousarray(pixels)
    if isinstance(image, Mapping):  # the Image feature's {"bytes", "path"}: bytes when stored, else the file
        image = image["bytes"] if image.get("bytes") is not None else image["path"]
    if isinstance(image, (bytes, bytearray, memoryview)):
        image = decode(bytes(image)).image
    elif isinstance(image, (str, Path)):
        image = decode(Path(image).read_bytes()).image
    if not isinstance(image, Image.Image):
        raise TypeError(f"not an image: {type(image).__name__}")
    if image.mode not in ("L", "RGB"):
        image = to_rgb(image)
    return np.asarray(image)


def pixel_digest(image: ImageLike) -> str:
    """``"<shape>:<md5 of the uint8 pixel bytes>"`` of ``image`` (module docstring: what is hashed)."""
    pixels = image_pixels(image)
    return "x".join(map(str, pixels.shape)) + ":" + hashlib.md5(pixels.tobytes()).hexdigest()


def _items(images: datasets.Dataset | Iterable[ImageLike], column: str) -> Iterator[ImageLike]:
    if isinstance(images, datasets.Dataset):
        # Arrow batches give the stored {"bytes", "path"} untouched: the Image feature would decode
        # and, with mode="RGB", turn grayscale faces into RGB before we could hash them.
        table = images.select_columns([column]).with_format("arrow")
        for batch in table.iter(batch_size=1000):
            yield from batch.column(column).to_pylist()
    else:
        yield from images


def _name(image: ImageLike, index: int) -> str:
    path = image.get("path") if isinstance(image, Mapping) else (image if isinstance(image, (str, Path)) else None)
    return str(path) if path else f"#{index}"


def split_digests(
    images: datasets.Dataset | Iterable[ImageLike], column: str = "image"
) -> tuple[list[str], list[str]]:
    """``(digests, names)`` of every row: a ``datasets.Dataset`` (its ``column``) or any iterable of images."""
    digests, names = [], []
    for index, image in enumerate(_items(images, column)):
        digests.append(pixel_digest(image))
        names.append(_name(image, index))
    return digests, names


def cross_split_duplicates(
    splits: Mapping[str, datasets.Dataset | Sequence[ImageLike]], column: str = "image"
) -> dict[str, list[Duplicate]]:
    """For each split, its rows with an exact pixel copy in another split, in row order.

    ``splits``: a ``DatasetDict`` (images in ``column``) or any mapping of split name to a sequence of
    images (a uint8 array ``[N, H, W]`` counts). Copies inside one split are not reported.
    """
    start = time.perf_counter()
    digests, names = {}, {}
    for split, images in splits.items():
        digests[split], names[split] = split_digests(images, column)
    where: dict[str, dict[str, list[int]]] = {}  # digest -> split -> rows
    for split, values in digests.items():
        for index, digest in enumerate(values):
            where.setdefault(digest, {}).setdefault(split, []).append(index)
    found: dict[str, list[Duplicate]] = {}
    for split, values in digests.items():
        found[split] = []
        for index, digest in enumerate(values):
            copies = {
                other: tuple(Row(j, names[other][j]) for j in rows)
                for other, rows in where[digest].items()
                if other != split
            }
            if copies:
                found[split].append(Duplicate(index, names[split][index], copies))
    logger.info(
        "Cross-split pixel copies in %d images (%.1f s): %s",
        sum(len(v) for v in digests.values()),
        time.perf_counter() - start,
        ", ".join(f"{split} {len(rows)}" for split, rows in found.items()),
    )
    return found


def duplicate_mask(
    found: Mapping[str, Sequence[Duplicate]], split: str, size: int, against: Iterable[str] | None = None
) -> np.ndarray:
    """``[size]`` bool, True where row ``i`` of ``split`` has a copy in ``against`` (default: any other split)."""
    against = None if against is None else set(against)
    mask = np.zeros(size, dtype=bool)
    for dup in found[split]:
        if against is None or against & dup.copies.keys():
            mask[dup.index] = True
    return mask


def find_duplicate_mask(
    splits: Mapping[str, datasets.Dataset | Sequence[ImageLike]],
    split: str,
    max_images: int | None = MAX_IMAGES,
    column: str = "image",
    report: PreparationReport | None = None,
) -> np.ndarray | None:
    """``[len(splits[split])]`` bool: rows of ``split`` with an exact pixel copy in another split of ``splits``.

    ``report``: the preparation report of ``splits`` (:func:`~modeling.data.report.saved_report`). When it has their
    split names and row counts, holds the cross-split search and names the rows of ``split`` that have a copy
    (:meth:`~modeling.data.report.Duplicates.mask`), the mask comes from it, whatever the number of images.
    Otherwise the splits are searched, or, above ``max_images`` images together, ``None`` (and a log line): the
    search decodes every image once, seconds for FER+ or RAF-DB, minutes for AffectNet.
    """
    size = len(splits[split])
    if report is not None and report.duplicates is not None and report.describes(splits):
        mask = report.duplicates.mask(split, size)
        if mask is not None:
            logger.info("%s: %d of %d rows have an exact pixel copy in another split (preparation report)",
                        split, mask.sum(), size)  # fmt: skip
            return mask
    if report is not None:
        logger.info("The preparation report does not give the %s rows with a copy; searching the splits", split)
    total = sum(len(images) for images in splits.values())
    if max_images is not None and total > max_images:
        logger.warning(
            "Not searching %d images for copies of %s rows (more than %d); no de-duplicated metrics",
            total, split, max_images,
        )  # fmt: skip
        return None
    mask = duplicate_mask(cross_split_duplicates(splits, column), split, size)
    logger.info("%s: %d of %d rows have an exact pixel copy in another split", split, mask.sum(), mask.size)
    return mask
