"""Developer command: the packed real FER+ data written back into the layouts the FER+ builder reads.

    python -m modeling.data.ferplus_layout ../shared/data/ferplus /tmp/FERPlus [--limit 50]
    python -m modeling.data.ferplus_layout ../shared/data/ferplus --pair /tmp/fer2013pair --rows 0:500

The source is ``../shared/data/ferplus`` (``{train,valid,test}_images.npz``: ``images`` uint8
``[N, 48, 48]`` and ``names`` in ``label.csv`` row order; ``labels/FER2013*/label.csv``;
``fer2013new.csv``). The first form writes the official FER+ folders ``FER2013Train/``,
``FER2013Valid/``, ``FER2013Test/`` (one PNG per name and the split's ``label.csv``); ``--pair``
writes Kaggle's ``fer2013.csv`` with Microsoft's ``fer2013new.csv`` for the chosen rows. Every
split is checked after writing: as many PNGs as names in the source, and as many label rows.

The images are test and benchmark data only (research-only terms, ``../shared/data/README.md``):
write them to a scratch folder, never into the repository or anything published.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..cli import MissingFileError, UsageError, UserError, plain_text, run_main, user_errors

# Official folder -> packed split name in ../shared/data/ferplus.
SPLITS: dict[str, str] = {"FER2013Train": "train", "FER2013Valid": "valid", "FER2013Test": "test"}
PAIR_SOURCE = "fer2013new.csv"
GREY = 128  # the picture of a pair row without an image name (FER+ drops those rows anyway)


class LayoutMismatchError(UserError, ValueError):
    """The source's images and labels disagree, or the destination holds files of another run."""


@dataclass(frozen=True)
class Written:
    """What one output holds after writing and checking: ``pngs`` images (0 for the pair) and ``rows`` label rows."""

    name: str
    pngs: int
    rows: int


def required_files(pair: bool = False) -> list[str]:
    """The source files (relative to the source folder) a layout is written from."""
    files = [f"{split}_images.npz" for split in SPLITS.values()]
    if pair:
        return files + [PAIR_SOURCE]
    return files + [f"labels/{folder}/label.csv" for folder in SPLITS]


def check_source(source: str | Path, pair: bool = False) -> Path:
    """``source`` after checking it holds every file of :func:`required_files`; names the missing ones
    (:class:`~modeling.cli.MissingFileError`, a ``FileNotFoundError``)."""
    source = Path(source)
    missing = [name for name in required_files(pair) if not (source / name).is_file()]
    if missing:
        raise MissingFileError(
            f"{source} lacks {', '.join(missing)} (expected the packed FER+ data, see ../shared/data/README.md)"
        )
    return source


def _packed(source: Path, split: str) -> tuple[np.ndarray, list[str]]:
    with np.load(source / f"{split}_images.npz") as z:
        return z["images"], [str(n) for n in z["names"]]


def unpack_split(source: str | Path, dest: str | Path, folder: str, limit: int | None = None) -> Written:
    """``dest/folder/``: the PNG of each name of the packed split and the matching ``label.csv`` rows.

    ``limit`` keeps the first ``limit`` names (and label rows). Raises :class:`LayoutMismatchError` (a ``ValueError``)
    when the packed names differ from ``label.csv``'s, or when the folder then holds other PNGs than those names.
    """
    source, out = Path(source), Path(dest) / folder
    images, names = _packed(source, SPLITS[folder])
    label_csv = source / "labels" / folder / "label.csv"
    with open(label_csv, newline="") as f:
        label_rows = list(csv.reader(f))
    if [row[0] for row in label_rows] != names:
        raise LayoutMismatchError(f"{source / (SPLITS[folder] + '_images.npz')} names differ from {label_csv}")
    if limit is not None:
        images, names, label_rows = images[:limit], names[:limit], label_rows[:limit]
    out.mkdir(parents=True, exist_ok=True)
    if limit is None:
        shutil.copyfile(label_csv, out / "label.csv")  # byte-identical to the release
    else:
        with open(out / "label.csv", "w", newline="") as f:
            csv.writer(f).writerows(label_rows)
    for image, name in zip(images, names, strict=True):
        # lowest zlib level: these files only feed the builder, written 35,710 at a time
        if not cv2.imwrite(str(out / name), image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f"could not write {out / name}")
    pngs = {p.name for p in out.glob("*.png")}
    with open(out / "label.csv", newline="") as f:
        rows = sum(1 for _ in csv.reader(f))
    if pngs != set(names) or len(pngs) != len(names) or rows != len(names):
        raise LayoutMismatchError(
            f"{out} holds {len(pngs)} PNGs and {rows} label rows for {len(names)} names in the source "
            "(leftovers of an earlier run? write into an empty folder)"
        )
    return Written(folder, len(pngs), rows)


def unpack_official(source: str | Path, dest: str | Path, limit: int | None = None) -> list[Written]:
    """``dest/FER2013{Train,Valid,Test}/`` with every PNG (or the first ``limit``) and its ``label.csv``."""
    source = check_source(source)
    return [unpack_split(source, dest, folder, limit) for folder in SPLITS]


def write_pair(source: str | Path, dest: str | Path, rows: Sequence[int]) -> Path:
    """``dest/fer2013.csv`` + ``dest/fer2013new.csv`` for the given 0-based rows of the real fer2013new.csv.

    Pixels come from the packed images by name (the later row's picture for repeated names, as in the
    release); rows without a name get a flat grey picture (FER+ drops them anyway). ``emotion`` is 0.
    """
    source, dest = check_source(source, pair=True), Path(dest)
    pixels: dict[str, np.ndarray] = {}
    for split in SPLITS.values():
        images, names = _packed(source, split)
        pixels.update(zip(names, images))
    with open(source / PAIR_SOURCE, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        all_rows = list(reader)
    outside = [i for i in rows if not 0 <= i < len(all_rows)]
    if outside:
        raise UsageError(f"rows {outside[:3]}... outside the {len(all_rows)} data rows of {source / PAIR_SOURCE}")
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "fer2013new.csv", "w", newline="") as fn, open(dest / "fer2013.csv", "w", newline="") as fo:
        new, old = csv.writer(fn), csv.writer(fo)
        new.writerow(header)
        old.writerow(["emotion", "pixels", "Usage"])
        for i in rows:
            row = all_rows[i]
            new.writerow(row)
            image = pixels.get(row[1], np.full((48, 48), GREY, np.uint8))
            old.writerow([0, " ".join(str(int(v)) for v in image.reshape(-1)), row[0]])
    for name in ("fer2013new.csv", "fer2013.csv"):
        with open(dest / name, newline="") as f:
            written = sum(1 for _ in csv.reader(f)) - 1  # less the header
        if written != len(rows):
            raise ValueError(f"{dest / name} holds {written} rows, {len(rows)} were asked for")
    return dest


def _row_range(text: str) -> range:
    start, sep, stop = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"--rows takes START:STOP (0-based, STOP excluded), got {text!r}")
    return range(int(start or 0), int(stop))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m modeling.data.ferplus_layout",
        description=plain_text(__doc__.split("\n\n")[0]),
        epilog="Test and benchmark data only: never commit or publish the images (../shared/data/README.md).",
    )
    p.add_argument("source", help="The packed FER+ data, e.g. ../shared/data/ferplus")
    p.add_argument("dest", nargs="?", help="Folder for FER2013Train/, FER2013Valid/, FER2013Test/")
    p.add_argument("--limit", type=int, default=None, help="Only the first N images (and label rows) per split")
    p.add_argument("--pair", default=None, metavar="DEST", help="Folder for fer2013.csv + fer2013new.csv")
    p.add_argument(
        "--rows",
        type=_row_range,
        default=None,
        help="Rows of fer2013new.csv for --pair, e.g. 0:500 (default: every row)",
    )
    args = p.parse_args(argv)
    if args.dest is None and args.pair is None:
        p.error("give DEST (official folders), --pair DEST, or both")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    with user_errors(OSError):  # an unreadable source or a destination the user cannot write to
        if args.dest is not None:
            for w in unpack_official(args.source, args.dest, args.limit):
                print(f"{Path(args.dest) / w.name}: {w.pngs} PNGs, {w.rows} label rows")
        if args.pair is not None:
            if args.rows is None:
                with open(check_source(args.source, pair=True) / PAIR_SOURCE, newline="") as f:
                    args.rows = range(sum(1 for _ in csv.reader(f)) - 1)  # every data row
            write_pair(args.source, args.pair, args.rows)
            print(f"{Path(args.pair)}: fer2013.csv + fer2013new.csv, {len(args.rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m modeling.data.ferplus_layout"))
