"""RAF-DB builder on a folder written in the owners' format with real FER+ faces."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from modeling.data import DatasetLayoutError, load_fer_dataset, preparation_report
from modeling.labels import RAFDB_LABELS
from tests.fer_fixtures import RAFDB_TEST, RAFDB_TRAIN, write_rafdb


@pytest.fixture
def rafdb_dir(ferplus_faces, tmp_path: Path) -> Path:
    return write_rafdb(tmp_path / "RAF-DB" / "basic", ferplus_faces[0])


def test_aligned_config_reads_the_label_file_with_one_based_labels(rafdb_dir: Path, tmp_path: Path):
    ds = load_fer_dataset("rafdb", rafdb_dir, cache_dir=tmp_path / "cache")
    assert set(ds) == {"train", "test"}
    assert ds["train"].features["label"].names == list(RAFDB_LABELS)
    assert ds["train"]["label"] == [label - 1 for label in RAFDB_TRAIN]  # file label 1 = surprise = index 0
    assert ds["test"]["label"] == [label - 1 for label in RAFDB_TEST]
    image = ds["train"][4]["image"]
    assert image.mode == "RGB" and image.size == (100, 100)
    # self-contained: the original file bytes are embedded
    stored = ds["train"].with_format("arrow")["image"].to_pylist()[0]
    assert stored["bytes"] == (rafdb_dir / "Image" / "aligned" / "train_00001_aligned.jpg").read_bytes()
    report = preparation_report("rafdb", rafdb_dir, cache_dir=tmp_path / "cache")
    assert report.splits["train"].class_counts == dict(Counter(RAFDB_LABELS[i - 1] for i in RAFDB_TRAIN))


def test_original_config_reads_the_original_images(rafdb_dir: Path, tmp_path: Path):
    ds = load_fer_dataset("rafdb", rafdb_dir, config="original", cache_dir=tmp_path)
    assert ds["test"][2]["image"].size == (123, 123)
    assert len(ds["train"]) == len(RAFDB_TRAIN)


def test_split_sizes_other_than_the_official_ones_are_warned_with_both_numbers(rafdb_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="modeling.data"):
        load_fer_dataset("rafdb", rafdb_dir, cache_dir=tmp_path)
    text = caplog.text
    assert "'train' has 14 examples; the official size is 12271" in text
    assert "'test' has 7 examples; the official size is 3068" in text


def test_data_dir_may_be_the_folder_holding_basic_as_the_archive_unpacks(rafdb_dir: Path, tmp_path: Path, caplog):
    holder = rafdb_dir.parent  # RAF-DB/, which holds basic/EmoLabel/... as the owners' archive unpacks
    with caplog.at_level(logging.INFO, logger="modeling.data"):
        ds = load_fer_dataset("rafdb", holder, cache_dir=tmp_path / "cache")
    assert ds["train"]["label"] == [label - 1 for label in RAFDB_TRAIN]
    assert ds["test"]["label"] == [label - 1 for label in RAFDB_TEST]
    assert f"rafdb: reading {rafdb_dir.resolve()} (found inside data_dir {holder.resolve()})" in caplog.text


def test_a_folder_without_the_label_file_names_both_places_it_was_looked_for(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"label file not found(.|\n)*in data_dir or in its basic/ folder"):
        load_fer_dataset("rafdb", tmp_path / "empty", cache_dir=tmp_path / "cache")
