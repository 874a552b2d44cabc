"""The real model shipped in modeling/default_model/ (issue 14): its files, loading, labels and use on real faces."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import modeling
from modeling.inference import shipped
from modeling.labels import FERPLUS_LABELS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "modeling" / "default_model"


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv(shipped.ENV_VAR, raising=False)  # the real shipped model, not a stand-in


def test_the_checkout_ships_a_model_of_at_most_25_mib_with_its_card_and_confusion_matrix():
    assert modeling.default_model_dir() == SHIPPED.resolve()
    names = {p.name for p in SHIPPED.iterdir()}
    assert names == {"config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                     "confusion_matrix_test.png"}  # fmt: skip
    assert (SHIPPED / "model.safetensors").stat().st_size <= 25 * 2**20
    card = (SHIPPED / "README.md").read_text()
    assert "model-index" in card and "`fer` 25.10.3" in card and "| 0.6710 |" in card  # the peer, same faces


def test_the_default_model_loads_in_plain_transformers_with_the_fer_plus_label_names():
    from transformers import AutoModelForImageClassification

    model, info = AutoModelForImageClassification.from_pretrained(
        modeling.default_model_dir(), output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert [model.config.id2label[i] for i in range(8)] == list(FERPLUS_LABELS)
    assert model.config.grayscale_input is True  # trained on FER2013's gray faces
    assert model.config.logit_adjustment["chosen_on"] == "validation"


def test_pipeline_on_the_default_model_classifies_real_fer_plus_faces_well_above_chance(ferplus_mini_dir):
    from transformers import pipeline

    classify = pipeline("image-classification", model=str(modeling.default_model_dir()), device="cpu")
    from modeling.data import load_fer_dataset

    valid = load_fer_dataset("ferplus", ferplus_mini_dir)["validation"]  # majority labels of mini/'s faces
    faces = [im.convert("RGB") for im in valid["image"]]
    predictions = classify(faces, top_k=8)
    assert all({p["label"] for p in faces_preds} == set(FERPLUS_LABELS) for faces_preds in predictions)
    top = [max(p, key=lambda x: x["score"])["label"] for p in predictions]
    truth = [FERPLUS_LABELS[i] for i in valid["label"]]
    accuracy = float(np.mean([a == b for a, b in zip(top, truth)]))
    assert accuracy >= 0.5, f"{accuracy:.2f} on {len(truth)} validation faces of mini/ (chance: 0.125)"


def test_fer_predict_without_model_uses_the_shipped_model_on_a_photo(ferplus_faces, tmp_path):
    import cv2

    from modeling.inference.faces import HaarFaceDetector

    detector = HaarFaceDetector()
    face = next(f for f in (cv2.resize(im, (112, 112), interpolation=cv2.INTER_CUBIC) for im in ferplus_faces[0][:200])
                if detector.detect(f))  # fmt: skip
    canvas = np.full((320, 400), 128, np.uint8)
    canvas[90:202, 150:262] = face
    Image.fromarray(np.repeat(canvas[:, :, None], 3, axis=2)).save(tmp_path / "photo.jpg")
    proc = subprocess.run([sys.executable, "-m", "modeling.inference.fer_predict", str(tmp_path / "photo.jpg")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert record["label"] in FERPLUS_LABELS and set(record["scores"]) == set(FERPLUS_LABELS)
    assert f"model {SHIPPED.resolve()} (the default model)" in proc.stderr


def test_on_a_cpu_without_bf16_units_the_shipped_model_runs_float32_where_int8_would_be_slower(monkeypatch):
    from modeling.inference.predictor import FERPredictor
    from tests.test_inference import mock_bf16_units

    mock_bf16_units(monkeypatch, [])  # an AVX2-only CPU: 6 x 192 channels, int8 ran 0.81x float32 there
    predictor = FERPredictor(modeling.default_model_dir(), device="cpu")
    assert predictor.precision == "fp32" and predictor.precision_why.endswith("int8 gains nothing at 192 channels)")
