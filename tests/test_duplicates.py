"""Cross-split exact duplicates: planted copies are found (and nothing else), the preparation report lists them,
and on the real FER+ data the finder gives the counts of NOTES #24."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from modeling.data import cross_split_duplicates, duplicate_mask, find_duplicate_mask, load_fer_dataset, pixel_digest
from modeling.data import duplicates as duplicates_module
from modeling.data import preparation_report as load_report
from modeling.data.__main__ import main as data_main
from modeling.data.duplicates import Row, image_pixels
from modeling.data.ferplus_votes import target
from modeling.data.report import REPORT_FILENAME, PreparationReport, saved_report

FEATURES = datasets.Features({"image": datasets.Image(mode="RGB"), "label": datasets.ClassLabel(names=["a", "b"])})


def png(pixels: np.ndarray, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def faces(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(n)]


def split(prefix: str, images: list[bytes]) -> datasets.Dataset:
    rows = {
        "image": [{"bytes": b, "path": f"{prefix}/{i}.png"} for i, b in enumerate(images)],
        "label": [0] * len(images),
    }
    return datasets.Dataset.from_dict(rows, features=FEATURES)


@pytest.fixture
def planted() -> datasets.DatasetDict:
    """train 0..5; test 0..3 new faces, 4 = train 1 re-encoded, 5 = train 3's bytes, 6 = train 2 as RGB, 7 = test 0."""
    train_faces, test_faces = faces(0, 6), faces(1, 4)
    train = [png(f) for f in train_faces]
    reencoded = png(train_faces[1], compress_level=0)
    assert reencoded != train[1]  # other bytes, same pixels
    as_rgb = png(np.stack([train_faces[2]] * 3, axis=-1))  # same look, but RGB: not the same pixels
    test = [png(f) for f in test_faces] + [reencoded, train[3], as_rgb, png(test_faces[0])]
    validation = [png(f) for f in faces(2, 3)]
    return datasets.DatasetDict(
        train=split("train", train), validation=split("validation", validation), test=split("test", test)
    )


def test_the_digest_is_the_shape_and_md5_of_the_decoded_pixels_whatever_holds_them(tmp_path):
    face = faces(3, 1)[0]
    data = png(face)
    (tmp_path / "face.png").write_bytes(data)
    expected = "48x48:" + hashlib.md5(face.tobytes()).hexdigest()  # NOTES #24: md5 of the 48x48 pixels
    forms = [
        face,
        face[..., None],
        data,
        {"bytes": data, "path": "x.png"},
        {"bytes": None, "path": str(tmp_path / "face.png")},
    ]
    forms += [tmp_path / "face.png", Image.open(io.BytesIO(data)), png(face, compress_level=1)]
    assert [pixel_digest(f) for f in forms] == [expected] * len(forms)
    assert image_pixels(data).dtype == np.uint8

    rgb = np.stack([face] * 3, axis=-1)
    assert pixel_digest(png(rgb)) == "48x48x3:" + hashlib.md5(rgb.tobytes()).hexdigest() != expected
    assert pixel_digest(face.reshape(24, 96)) != expected  # same bytes, other shape
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)
    assert image_pixels(palette).shape == (48, 48, 3)  # other modes: the RGB the builders would store
    with pytest.raises(ValueError, match="uint8"):
        pixel_digest(face.astype(np.float32))


def test_planted_copies_are_found_exactly_a_reencoded_png_and_the_same_bytes(planted):
    found = cross_split_duplicates(planted)
    assert [(d.index, d.name, d.copies) for d in found["test"]] == [
        (4, "test/4.png", {"train": (Row(1, "train/1.png"),)}),
        (5, "test/5.png", {"train": (Row(3, "train/3.png"),)}),
    ]  # not the RGB copy (6), not the copy inside test (7)
    assert [(d.index, d.copies) for d in found["train"]] == [
        (1, {"test": (Row(4, "test/4.png"),)}),
        (3, {"test": (Row(5, "test/5.png"),)}),
    ]
    assert found["validation"] == []
    assert duplicate_mask(found, "test", 8).tolist() == [False] * 4 + [True, True, False, False]
    assert not duplicate_mask(found, "test", 8, against=["validation"]).any()


def test_the_mask_follows_the_rows_of_selected_splits_and_is_skipped_above_max_images(planted):
    shuffled = datasets.DatasetDict(train=planted["train"].select([5, 3, 4, 1]), test=planted["test"])
    assert find_duplicate_mask(shuffled, "train").tolist() == [False, True, False, True]
    assert find_duplicate_mask(planted, "test", max_images=len(planted["train"])) is None


def test_a_copy_found_in_several_rows_and_splits_lists_each_of_them():
    a, b = faces(4, 2)
    found = cross_split_duplicates({"test": [a, b], "train": [b, a, a], "validation": np.stack([a])})
    assert found["test"][0].copies == {"train": (Row(1, "#1"), Row(2, "#2")), "validation": (Row(0, "#0"),)}
    assert found["test"][1].copies == {"train": (Row(0, "#0"),)}
    assert [d.index for d in found["validation"]] == [0]


def _write_folder(root: Path, splits: datasets.DatasetDict) -> None:
    for name, ds in splits.items():
        for row in ds.cast_column("image", datasets.Image(decode=False)):
            path = root / name / "a" / Path(row["image"]["path"]).name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(row["image"]["bytes"])


def test_the_preparation_report_lists_the_planted_copies_per_pair_of_splits_test_first(planted, tmp_path, capsys):
    _write_folder(tmp_path / "faces", planted)
    report = load_report("imagefolder", tmp_path / "faces", cache_dir=tmp_path / "cache")
    dup = report.duplicates
    assert dup.rows == {"test": 2, "validation": 0, "train": 2}
    assert [(p.split, p.other, p.count, p.other_count) for p in dup.pairs] == [
        ("test", "train", 2, 2),
        ("test", "validation", 0, 0),
        ("validation", "train", 0, 0),
    ]
    assert [(f.file, f.index, f.copies) for f in dup.pairs[0].files] == [
        ("test/a/4.png", 4, ["train/a/1.png"]),
        ("test/a/5.png", 5, ["train/a/3.png"]),
    ]
    # saved beside the Arrow files, so a cache hit shows it without searching again
    (saved,) = (tmp_path / "cache").rglob(REPORT_FILENAME)
    assert json.loads(saved.read_text())["duplicates"]["pairs"][0]["count"] == 2
    assert PreparationReport.load(saved.parent).duplicates == dup

    assert data_main(["imagefolder", str(tmp_path / "faces"), "--cache_dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "copies in other splits" in printed
    assert "test in train: 2 of 8 test images have a copy (2 train images)" in printed
    assert "test/a/4.png = train/a/1.png" in printed and "test in validation: 0 of 8" in printed


def test_a_report_saved_before_the_search_existed_gets_it_on_load(planted, tmp_path):
    _write_folder(tmp_path / "faces", planted)
    load_report("imagefolder", tmp_path / "faces", cache_dir=tmp_path / "cache")
    (saved,) = (tmp_path / "cache").rglob(REPORT_FILENAME)
    old = json.loads(saved.read_text())
    del old["duplicates"]
    saved.write_text(json.dumps(old))
    assert PreparationReport.load(saved.parent).duplicates.rows["test"] == 2
    assert json.loads(saved.read_text())["duplicates"]["rows"]["test"] == 2


def test_the_saved_preparation_report_gives_the_mask_without_searching_again_and_only_for_the_splits_it_describes(
    planted, tmp_path, monkeypatch
):
    _write_folder(tmp_path / "faces", planted)
    splits = load_fer_dataset("imagefolder", tmp_path / "faces", cache_dir=tmp_path / "cache")
    searched = {name: find_duplicate_mask(splits, name) for name in splits}
    report = saved_report(splits)
    assert report is not None and report.describes(splits)

    def search_again(*args, **kwargs):
        raise AssertionError("searched the splits again")

    monkeypatch.setattr(duplicates_module, "cross_split_duplicates", search_again)
    cached = find_duplicate_mask(splits, "test", report=report)
    assert cached.tolist() == searched["test"].tolist() == [False] * 4 + [True, True, False, False]
    assert find_duplicate_mask(splits, "validation", report=report).tolist() == searched["validation"].tolist()
    assert find_duplicate_mask(splits, "test", max_images=1, report=report).tolist() == cached.tolist()  # no decoding

    # The report names test rows only for (test, train): the train rows with a copy are counted, not named.
    with pytest.raises(AssertionError, match="searched the splits again"):
        find_duplicate_mask(splits, "train", report=report)
    # Fewer rows than the report counts: searched.
    with pytest.raises(AssertionError, match="searched the splits again"):
        find_duplicate_mask({**splits, "test": splits["test"].select(range(6))}, "test", report=report)
    # Rows reordered on top of the Arrow file, or splits swapped: no report to use.
    assert saved_report({**splits, "test": splits["test"].shuffle(seed=0)}) is None
    assert saved_report({"test": splits["train"], "train": splits["test"], "validation": splits["validation"]}) is None
    assert saved_report({name: list(range(len(ds))) for name, ds in splits.items()}) is None  # not Arrow-backed


def _majority_kept(ferplus_dir: Path, folder: str) -> np.ndarray:
    with open(ferplus_dir / "labels" / folder / "label.csv", newline="") as f:
        return np.array([target([int(v) for v in row[2:]], "majority").label is not None for row in csv.reader(f)])


def test_on_the_real_ferplus_data_244_majority_test_faces_copy_training_images_and_37_validation_ones(ferplus_dir):
    packed = {}
    for name, file in (("train", "train"), ("validation", "valid"), ("test", "test")):
        with np.load(ferplus_dir / f"{file}_images.npz") as z:
            packed[name] = z["images"]
    kept = {
        "train": _majority_kept(ferplus_dir, "FER2013Train"),
        "validation": _majority_kept(ferplus_dir, "FER2013Valid"),
        "test": _majority_kept(ferplus_dir, "FER2013Test"),
    }
    assert {k: (len(packed[k]), int(v.sum())) for k, v in kept.items()} == {
        "train": (28558, 25045), "validation": (3579, 3191), "test": (3573, 3137)
    }  # fmt: skip

    # NOTES #24: the 3,137 majority test faces against every image of the train and validation folders
    found = cross_split_duplicates(
        {"test": packed["test"][kept["test"]], "train": packed["train"], "validation": packed["validation"]}
    )
    n = int(kept["test"].sum())
    assert duplicate_mask(found, "test", n, against=["train"]).sum() == 244
    assert duplicate_mask(found, "test", n, against=["validation"]).sum() == 37
    assert duplicate_mask(found, "test", n).sum() == 267
    # every test image against every image: 288 and 44 of 3,573
    found = cross_split_duplicates(packed)
    assert duplicate_mask(found, "test", 3573, against=["train"]).sum() == 288
    assert duplicate_mask(found, "test", 3573, against=["validation"]).sum() == 44
    # the prepared majority splits (what the preparation report and run_finetune compare): 12 and 2 of those test
    # faces have their only copies among the train and validation images that the protocol drops
    found = cross_split_duplicates({k: packed[k][kept[k]] for k in packed})
    assert duplicate_mask(found, "test", n, against=["train"]).sum() == 232
    assert duplicate_mask(found, "test", n, against=["validation"]).sum() == 35
    assert duplicate_mask(found, "test", n).sum() == 254
