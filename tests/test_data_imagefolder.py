"""imagefolder builder: labels from class folders when present, none otherwise, split folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from modeling.data import DatasetLayoutError, load_fer_dataset, preparation_report


def _save(path: Path, face) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(face).save(path)


def test_class_folders_become_sorted_labels(ferplus_faces, tmp_path: Path):
    faces = ferplus_faces[0]
    for i, cls in enumerate(["sad", "happy", "happy", "angry/nested"]):
        _save(tmp_path / "faces" / cls / f"{i}.png", faces[i])
    (tmp_path / "faces" / "happy" / "notes.txt").write_text("not an image")
    ds = load_fer_dataset("imagefolder", tmp_path / "faces", cache_dir=tmp_path / "cache")
    assert list(ds) == ["train"]
    assert ds["train"].features["label"].names == ["angry", "happy", "sad"]
    assert sorted(ds["train"]["label"]) == [0, 1, 1, 2]
    report = preparation_report("imagefolder", tmp_path / "faces", cache_dir=tmp_path / "cache")
    assert report.splits["train"].excluded == {"not an image file": 1}


def test_a_flat_folder_gives_images_without_a_label_column(ferplus_faces, tmp_path: Path):
    for i in range(5):
        _save(tmp_path / "faces" / f"{i}.png", ferplus_faces[0][i])
    ds = load_fer_dataset("imagefolder", tmp_path / "faces", cache_dir=tmp_path / "cache")
    assert list(ds["train"].features) == ["image"]
    assert ds["train"][0]["image"].mode == "RGB"
    with pytest.raises(DatasetLayoutError, match="not inside a class folder"):
        load_fer_dataset("imagefolder", tmp_path / "faces", cache_dir=tmp_path / "cache", labels=True)


def test_split_folders_become_splits(ferplus_faces, tmp_path: Path):
    for i, rel in enumerate(["train/a/0.png", "train/b/1.png", "val/a/2.png", "test/b/3.png"]):
        _save(tmp_path / "faces" / rel, ferplus_faces[0][i])
    ds = load_fer_dataset("imagefolder", tmp_path / "faces", cache_dir=tmp_path / "cache")
    assert {k: len(v) for k, v in ds.items()} == {"train": 2, "validation": 1, "test": 1}
    assert ds["test"]["label"] == [1]
