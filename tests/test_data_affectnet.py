"""AffectNet builder: both releases, configs 8 and 7, face crops from the box, eye alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeling.data import load_fer_dataset, preparation_report
from modeling.data.images import align_eyes
from modeling.labels import AFFECTNET7_LABELS, AFFECTNET8_LABELS
from tests.fer_fixtures import write_affectnet_cropped, write_affectnet_manual


@pytest.fixture
def manual(ferplus_faces, tmp_path: Path):
    root = tmp_path / "AffectNet"
    return root, write_affectnet_manual(root, ferplus_faces[0])


def test_manual_release_crops_the_face_box_exactly(manual, tmp_path: Path):
    root, rows = manual
    ds = load_fer_dataset("affectnet", root, cache_dir=tmp_path / "cache")
    assert set(ds) == {"train", "validation"}
    assert ds["train"].features["label"].names == list(AFFECTNET8_LABELS)
    kept = [r for r in rows["train"] if r[2] <= 7]
    assert ds["train"]["label"] == [r[2] for r in kept]
    for got, (path, (x, y, w, h), _, valence, arousal) in zip(ds["train"], kept):
        source = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(np.asarray(got["image"]), source[y : y + h, x : x + w])
        assert got["valence"] == pytest.approx(valence, abs=1e-6) and got["arousal"] == pytest.approx(
            arousal, abs=1e-6
        )
    assert len(ds["validation"]) == 8  # the header-less validation.csv keeps its first row


def test_excluded_expressions_are_counted_by_reason(manual, tmp_path: Path):
    root, _ = manual
    report8 = preparation_report("affectnet", root, cache_dir=tmp_path)
    assert report8.splits["train"].excluded == {"none": 1, "uncertain": 1, "non-face": 1}
    ds7 = load_fer_dataset("affectnet", root, config="7", cache_dir=tmp_path)
    report7 = preparation_report("affectnet", root, config="7", cache_dir=tmp_path)
    assert ds7["train"].features["label"].names == list(AFFECTNET7_LABELS)
    assert report7.splits["train"].excluded == {"contempt": 1, "none": 1, "uncertain": 1, "non-face": 1}
    assert report7.splits["validation"].kept == 7 and report7.splits["validation"].expected == 3500


def test_cropped_release_reads_numpy_annotations(ferplus_faces, tmp_path: Path):
    root = tmp_path / "AffectNet"
    rows = write_affectnet_cropped(root, ferplus_faces[0])
    ds = load_fer_dataset("affectnet", root, cache_dir=tmp_path / "cache")
    assert ds["train"]["label"] == [e for _, e in rows["train"]]
    assert ds["validation"]["valence"] == pytest.approx([0.1 * i for i in range(8)], abs=1e-6)
    stored = ds["train"].with_format("arrow")["image"].to_pylist()[0]
    assert stored["bytes"] == rows["train"][0][0].read_bytes()  # no crop: original bytes
    aligned = load_fer_dataset("affectnet", root, cache_dir=tmp_path / "cache", align=True)
    assert aligned["train"][0]["image"].size == (112, 112)


def _bright_rows(image: np.ndarray) -> tuple[float, float]:
    gray = image.mean(axis=-1)
    half = gray.shape[1] // 2
    rows = [np.nonzero(gray[:, s] > 128)[0].mean() for s in (slice(0, half), slice(half, None))]
    return rows[0], rows[1]


def test_align_levels_the_eyes_by_rotating_about_their_midpoint():
    canvas = np.zeros((120, 120, 3), np.uint8)
    right_eye, left_eye = (40, 50), (80, 70)  # (x, y): the eye line slopes down to the right by ~26.6 deg
    for x, y in (right_eye, left_eye):
        canvas[y - 2 : y + 3, x - 2 : x + 3] = 255
    landmarks = np.zeros((68, 2))
    landmarks[36:42], landmarks[42:48] = right_eye, left_eye
    before = _bright_rows(canvas)
    after = _bright_rows(np.asarray(align_eyes(Image.fromarray(canvas), landmarks)))
    assert abs(before[0] - before[1]) == 20
    assert abs(after[0] - after[1]) < 1.0
    assert after[0] == pytest.approx(60, abs=1.0)  # the midpoint (60, 60) stays put


def test_align_option_rotates_before_cropping_the_box(manual, tmp_path: Path):
    root, rows = manual
    ds = load_fer_dataset("affectnet", root, cache_dir=tmp_path, align=True)
    # the fixture's eyes are level, so alignment is (almost) the identity on the crop
    path, (x, y, w, h), *_ = rows["train"][0]
    source = np.asarray(Image.open(path).convert("RGB"))[y : y + h, x : x + w].astype(int)
    assert np.abs(np.asarray(ds["train"][0]["image"]).astype(int) - source).mean() < 1.0
