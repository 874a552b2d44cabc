"""Test helpers: write the packed real FER+ data (``*_images.npz``) back into the official layouts."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

SPLITS = {"FER2013Train": "train", "FER2013Valid": "valid", "FER2013Test": "test"}


def unpack_official(ferplus_dir: Path, dest: Path) -> Path:
    """``dest/FER2013{Train,Valid,Test}/`` with every PNG and a copy of the split's ``label.csv``."""
    for folder, split in SPLITS.items():
        out = dest / folder
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ferplus_dir / "labels" / folder / "label.csv", out / "label.csv")
        with np.load(ferplus_dir / f"{split}_images.npz") as z:
            images, names = z["images"], z["names"]
        for image, name in zip(images, names):
            # lowest zlib level: these files only feed the builder, written 35,710 at a time
            cv2.imwrite(str(out / str(name)), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return dest


def write_pair(ferplus_dir: Path, dest: Path, rows: range | list[int]) -> Path:
    """``dest/fer2013.csv`` + ``dest/fer2013new.csv`` for the given 0-based rows of the real fer2013new.csv.

    Pixels come from the packed images by name (the later row's picture for repeated names, as in the
    release); rows without a name get a flat grey picture (FER+ drops them anyway). ``emotion`` is 0.
    """
    pixels = {}
    for split in SPLITS.values():
        with np.load(ferplus_dir / f"{split}_images.npz") as z:
            pixels.update({str(n): img for n, img in zip(z["names"], z["images"])})
    with open(ferplus_dir / "fer2013new.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        all_rows = list(reader)
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "fer2013new.csv", "w", newline="") as fn, open(dest / "fer2013.csv", "w", newline="") as fo:
        new, old = csv.writer(fn), csv.writer(fo)
        new.writerow(header)
        old.writerow(["emotion", "pixels", "Usage"])
        for i in rows:
            row = all_rows[i]
            new.writerow(row)
            image = pixels.get(row[1], np.full((48, 48), 128, np.uint8))
            old.writerow([0, " ".join(str(int(v)) for v in image.reshape(-1)), row[0]])
    return dest
