"""Bad input: missing files are one clear error; bad items are counted by name, or raise under strict."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeling.data import DataQualityError, DatasetLayoutError, load_fer_dataset, preparation_report
from modeling.data.images import decode, stored
from tests.fer_fixtures import write_affectnet_manual, write_rafdb


@pytest.fixture
def rafdb_dir(ferplus_faces, tmp_path: Path) -> Path:
    return write_rafdb(tmp_path / "rafdb", ferplus_faces[0])


@pytest.fixture
def ferplus_copy(ferplus_mini_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(ferplus_mini_dir, tmp_path / "ferplus"))


def test_missing_label_file_names_the_path_and_the_layout(rafdb_dir: Path, tmp_path: Path):
    (rafdb_dir / "EmoLabel" / "list_patition_label.txt").unlink()
    with pytest.raises(
        DatasetLayoutError, match=r"label file not found: .*list_patition_label.txt(.|\n)*Expected rafdb layout"
    ):
        load_fer_dataset("rafdb", rafdb_dir, cache_dir=tmp_path / "cache")


def test_missing_ferplus_label_csv_and_missing_data_dir_are_layout_errors(ferplus_copy: Path, tmp_path: Path):
    (ferplus_copy / "FER2013Test" / "label.csv").unlink()
    with pytest.raises(DatasetLayoutError, match=r"FER2013Test/label.csv(.|\n)*fer2013new.csv"):
        load_fer_dataset("ferplus", ferplus_copy, cache_dir=tmp_path / "cache")
    with pytest.raises(DatasetLayoutError, match="data_dir not found"):
        load_fer_dataset("ferplus", tmp_path / "nowhere", cache_dir=tmp_path / "cache")


def test_missing_image_folder_is_a_layout_error(rafdb_dir: Path, ferplus_faces, tmp_path: Path):
    shutil.rmtree(rafdb_dir / "Image" / "original")
    with pytest.raises(DatasetLayoutError, match=r"image folder not found: .*Image/original"):
        load_fer_dataset("rafdb", rafdb_dir, config="original", cache_dir=tmp_path / "cache")
    root = tmp_path / "affectnet"
    write_affectnet_manual(root, ferplus_faces[0])
    shutil.rmtree(root / "Manually_Annotated_Images")
    with pytest.raises(DatasetLayoutError, match="Manually_Annotated_Images"):
        load_fer_dataset("affectnet", root, cache_dir=tmp_path / "cache")


def test_a_label_line_naming_a_missing_image_is_a_layout_error(ferplus_copy: Path, rafdb_dir: Path, tmp_path: Path):
    name = sorted((ferplus_copy / "FER2013Valid").glob("*.png"))[7]
    name.unlink()
    with pytest.raises(
        DatasetLayoutError, match=rf"image named by FER2013Valid/label.csv:\d+ not found: .*{name.name}"
    ):
        load_fer_dataset("ferplus", ferplus_copy, cache_dir=tmp_path / "cache")
    (rafdb_dir / "Image" / "aligned" / "test_00003_aligned.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match="list_patition_label.txt:17 not found: .*test_00003_aligned.jpg"):
        load_fer_dataset("rafdb", rafdb_dir, cache_dir=tmp_path / "cache")


def test_corrupt_and_truncated_images_are_reported_by_name_or_raise_when_strict(rafdb_dir: Path, tmp_path: Path):
    aligned = rafdb_dir / "Image" / "aligned"
    (aligned / "train_00002_aligned.jpg").write_bytes(b"this is not a jpeg")
    data = (aligned / "train_00005_aligned.jpg").read_bytes()
    (aligned / "train_00005_aligned.jpg").write_bytes(data[: len(data) // 2])
    ds = load_fer_dataset("rafdb", rafdb_dir, cache_dir=tmp_path / "cache")
    assert len(ds["train"]) == 12
    report = preparation_report("rafdb", rafdb_dir, cache_dir=tmp_path / "cache")
    bad = {p.file: p.reason for p in report.splits["train"].problems}
    assert set(bad) == {"Image/aligned/train_00002_aligned.jpg", "Image/aligned/train_00005_aligned.jpg"}
    assert all(r.startswith("corrupt image") for r in bad.values())
    # strict on the same (cached) data, then on a fresh cache: both raise, naming the files
    for cache in (tmp_path / "cache", tmp_path / "fresh"):
        with pytest.raises(DataQualityError, match=r"train_00002_aligned.jpg(.|\n)*train_00005_aligned.jpg"):
            load_fer_dataset("rafdb", rafdb_dir, cache_dir=cache, strict=True)


def test_labels_out_of_range_are_counted_and_strict_raises(rafdb_dir: Path, ferplus_faces, tmp_path: Path):
    label_file = rafdb_dir / "EmoLabel" / "list_patition_label.txt"
    lines = label_file.read_text().splitlines()
    lines[0] = "train_00001.jpg 8"
    label_file.write_text("\n".join(lines) + "\n")
    report = preparation_report("rafdb", rafdb_dir, cache_dir=tmp_path / "cache")
    assert [(p.file, p.reason) for p in report.splits["train"].problems] == [
        ("EmoLabel/list_patition_label.txt:1", "label out of range: 8 (expected 1..7)")
    ]
    with pytest.raises(DataQualityError, match="list_patition_label.txt:1: label out of range"):
        load_fer_dataset("rafdb", rafdb_dir, cache_dir=tmp_path / "cache", strict=True)
    root = tmp_path / "affectnet"
    write_affectnet_manual(root, ferplus_faces[0])
    csv_path = root / "Manually_Annotated_file_lists" / "validation.csv"
    rows = csv_path.read_text().splitlines()
    fields = rows[2].split(",")
    fields[6] = "12"
    rows[2] = ",".join(fields)
    csv_path.write_text("\n".join(rows) + "\n")
    report = preparation_report("affectnet", root, cache_dir=tmp_path / "cache")
    assert [p.file for p in report.splits["validation"].problems] == ["Manually_Annotated_file_lists/validation.csv:3"]


def test_malformed_csv_rows_are_counted_by_line(ferplus_copy: Path, ferplus_faces, tmp_path: Path):
    label_csv = ferplus_copy / "FER2013Test" / "label.csv"
    lines = label_csv.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 4)[0]  # 4 vote counts short
    lines[4] = lines[4].replace(",0,", ",x,", 1)
    label_csv.write_text("\n".join(lines) + "\n")
    report = preparation_report("ferplus", ferplus_copy, cache_dir=tmp_path / "cache")
    assert [p.file for p in report.splits["test"].problems] == ["FER2013Test/label.csv:4", "FER2013Test/label.csv:5"]
    assert all(p.reason.startswith("malformed row") for p in report.splits["test"].problems)
    root = tmp_path / "affectnet"
    write_affectnet_manual(root, ferplus_faces[0])
    csv_path = root / "Manually_Annotated_file_lists" / "training.csv"
    rows = csv_path.read_text().splitlines()
    rows[1] = rows[1].replace(",", ";", 2)
    csv_path.write_text("\n".join(rows) + "\n")
    report = preparation_report("affectnet", root, cache_dir=tmp_path / "cache")
    assert [p.file for p in report.splits["train"].problems] == ["Manually_Annotated_file_lists/training.csv:2"]


def test_editing_a_label_file_prepares_again(rafdb_dir: Path, tmp_path: Path):
    first = load_fer_dataset("rafdb", rafdb_dir, cache_dir=tmp_path)
    label_file = rafdb_dir / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text("".join(label_file.read_text().splitlines(keepends=True)[:-1]))
    second = load_fer_dataset("rafdb", rafdb_dir, cache_dir=tmp_path)
    assert len(first["test"]) == 7 and len(second["test"]) == 6


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_every_image_mode_comes_out_as_rgb(ferplus_faces, tmp_path: Path):
    face = ferplus_faces[0][0]
    sixteen = Image.fromarray(face.astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    rgba = Image.fromarray(np.dstack([face] * 3 + [np.full_like(face, 255)]), "RGBA")
    cmyk = Image.fromarray(np.dstack([face] * 3)).convert("CMYK")
    palette = Image.fromarray(face).convert("P")
    files = {"l.png": _png(Image.fromarray(face)), "rgba.png": _png(rgba), "cmyk.jpg": _jpeg(cmyk),
             "i16.png": _png(sixteen), "p.png": _png(palette)}  # fmt: skip
    folder = tmp_path / "faces"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    ds = load_fer_dataset("imagefolder", folder, cache_dir=tmp_path / "cache")
    by_path = {r["path"]: r for r in ds["train"].with_format("arrow")["image"].to_pylist()}
    for i, name in enumerate(by_path):
        image = ds["train"][i]["image"]
        assert image.mode == "RGB" and image.size == (48, 48), name
        if name in ("l.png", "rgba.png", "i16.png", "p.png"):  # lossless sources keep their exact gray values
            assert np.array_equal(np.asarray(image)[..., 1], face), name
    assert by_path["l.png"]["bytes"] == files["l.png"]  # no conversion needed: original bytes
    assert by_path["i16.png"]["bytes"] != files["i16.png"]  # 16-bit: re-encoded as 8-bit RGB PNG
    assert decode(stored(decode(files["i16.png"]), "x")["bytes"]).image.mode == "RGB"
