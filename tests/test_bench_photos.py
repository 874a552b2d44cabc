"""bench/photos.py: fer-predict on public-domain portraits from scikit-image and matplotlib, with boxes and labels drawn."""

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from modeling.labels import FERPLUS_LABELS
from tests.tiny_classifier import save_tiny_classifier

ROOT = Path(__file__).resolve().parents[1]


def test_photos_bench_detects_the_faces_of_both_photos_and_writes_annotated_copies(tmp_path):
    pytest.importorskip("skimage", reason="scikit-image (the dev extra) provides the photos")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import photos
    finally:
        sys.path.remove(str(ROOT / "bench"))
    model = save_tiny_classifier(tmp_path / "model")
    summary = photos.main(["--model", str(model), "--out", str(tmp_path / "out")])
    for name in photos.PHOTOS:
        faces = summary["photos"][name]
        assert len(faces) == 1, f"{len(faces)} faces found in {name}"  # each photo shows one person's face
        assert all(f["label"] in FERPLUS_LABELS and 0 < f["score"] <= 1 for f in faces)
        annotated = Image.open(tmp_path / "out" / f"{name}.png")
        assert annotated.size == {"astronaut": (512, 512), "grace_hopper": (512, 600)}[name]
    lines = (tmp_path / "out" / "faces.jsonl").read_text().splitlines()
    assert len(lines) == sum(len(v) for v in summary["photos"].values())
    assert {json.loads(line)["file"] for line in lines} == {f"{n}.png" for n in photos.PHOTOS}
    assert {json.loads(line)["annotated"] for line in lines} == {f"{n}.png" for n in photos.PHOTOS}
