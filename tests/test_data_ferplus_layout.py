"""``python -m modeling.data.ferplus_layout`` on the real packed FER+ data: counts, pixels, refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeling.cli import run_main
from modeling.data.ferplus_layout import SPLITS, main, required_files, unpack_split

PROG = "python -m modeling.data.ferplus_layout"


def packed(ferplus_dir: Path, split: str) -> tuple[np.ndarray, list[str]]:
    with np.load(ferplus_dir / f"{split}_images.npz") as z:
        return z["images"], [str(n) for n in z["names"]]


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_the_cli_unpacks_the_first_n_images_of_each_split_with_their_label_rows_and_exact_pixels(
    ferplus_dir, tmp_path, capsys
):
    assert main([str(ferplus_dir), str(tmp_path / "official"), "--limit", "50"]) == 0
    printed = capsys.readouterr().out.splitlines()
    for folder, split in SPLITS.items():
        out = tmp_path / "official" / folder
        pngs = sorted(out.glob("*.png"))
        rows = read_rows(out / "label.csv")
        assert len(pngs) == len(rows) == 50
        assert f"{out}: 50 PNGs, 50 label rows" in printed
        images, names = packed(ferplus_dir, split)
        assert rows == read_rows(ferplus_dir / "labels" / folder / "label.csv")[:50]
        assert [r[0] for r in rows] == names[:50] == [p.name for p in pngs]
        for image, name in zip(images[:50], names[:50]):
            assert np.array_equal(np.asarray(Image.open(out / name)), image), name


def test_a_source_without_a_file_is_refused_with_its_name(ferplus_dir, tmp_path, capsys):
    source = tmp_path / "source"
    for name in required_files():
        if name != "valid_images.npz":
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).symlink_to(ferplus_dir / name)
    assert run_main(lambda: main([str(source), str(tmp_path / "official")]), PROG) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{PROG}: error: ") and "lacks valid_images.npz" in line
    assert not (tmp_path / "official").exists()  # nothing half-written


def test_a_destination_holding_other_pngs_is_reported_not_counted_as_written(ferplus_dir, tmp_path):
    stale = tmp_path / "FER2013Test" / "fer9999999.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    with pytest.raises(ValueError, match="holds 11 PNGs and 10 label rows for 10 names"):
        unpack_split(ferplus_dir, tmp_path, "FER2013Test", limit=10)


def test_the_pair_option_writes_both_csvs_for_the_chosen_rows_with_packed_pixels(ferplus_dir, tmp_path, capsys):
    assert main([str(ferplus_dir), "--pair", str(tmp_path / "pair"), "--rows", "0:20"]) == 0
    assert f"{tmp_path / 'pair'}: fer2013.csv + fer2013new.csv, 20 rows" in capsys.readouterr().out
    new = read_rows(tmp_path / "pair" / "fer2013new.csv")
    old = read_rows(tmp_path / "pair" / "fer2013.csv")
    assert new == read_rows(ferplus_dir / "fer2013new.csv")[:21]  # header + rows 0..19
    assert len(old) == 21 and old[0] == ["emotion", "pixels", "Usage"]
    images, names = packed(ferplus_dir, "train")
    first = names.index(new[1][1])
    assert np.array_equal(np.array(old[1][1].split(), dtype=np.uint8).reshape(48, 48), images[first])


def test_rows_beyond_fer2013new_are_refused(ferplus_dir, tmp_path, capsys):
    argv = [str(ferplus_dir), "--pair", str(tmp_path / "pair"), "--rows", "35880:35900"]
    assert run_main(lambda: main(argv), PROG) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{PROG}: error: rows [") and "outside the" in line
