import json

import numpy as np
import pytest
import torch

from modeling.inference import FERPredictor, NotAnImageClassifierError
from modeling.labels import FERPLUS_LABELS
from tests.tiny import tiny_mae_config
from tests.tiny_classifier import save_tiny_classifier


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, ferplus_faces):
    images, _ = ferplus_faces
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny_fer"), calibration=images[:64])


def test_batched_predictor_gives_the_pipeline_labels_on_real_ferplus_faces(tiny_dir, ferplus_faces):
    from PIL import Image
    from transformers import pipeline

    images, _ = ferplus_faces
    faces = list(images[:256])
    ours = FERPredictor(tiny_dir, device="cpu").predict(faces, batch_size=64)
    pipe = pipeline("image-classification", model=str(tiny_dir), device="cpu")
    theirs = pipe([Image.fromarray(f) for f in faces], top_k=len(FERPLUS_LABELS), batch_size=64)

    assert [o["label"] for o in ours] == [t[0]["label"] for t in theirs]
    assert len({o["label"] for o in ours}) >= 4, "the tiny model should spread its predictions over classes"
    for o, t in zip(ours, theirs):
        for entry in t:
            assert o["scores"][entry["label"]] == pytest.approx(entry["score"], abs=1e-4)


def test_batched_preprocessing_equals_the_models_image_processor(tiny_dir, ferplus_faces):
    from PIL import Image
    from transformers import AutoImageProcessor

    images, _ = ferplus_faces
    crops = [images[0], np.repeat(images[1][:40, :44, None], 3, axis=2), images[2]]  # mixed sizes and channels
    expected = AutoImageProcessor.from_pretrained(tiny_dir)([Image.fromarray(c) for c in crops], return_tensors="pt")
    got = FERPredictor(tiny_dir, device="cpu").preprocess(crops)
    torch.testing.assert_close(got, expected["pixel_values"], atol=1e-5, rtol=0)


def test_bf16_predictor_keeps_the_float32_labels_or_falls_back_where_the_cpu_lacks_bf16(tiny_dir, ferplus_faces):
    from modeling.inference import cpu_has_bf16

    faces = list(ferplus_faces[0][:128])
    fp32 = FERPredictor(tiny_dir, device="cpu").predict(faces)
    predictor = FERPredictor(tiny_dir, device="cpu", bf16=True)
    assert predictor.bf16 == cpu_has_bf16()
    bf16 = predictor.predict(faces)
    agree = np.mean([a["label"] == b["label"] for a, b in zip(fp32, bf16)])
    assert agree >= 0.95
    assert max(abs(a["score"] - b["score"]) for a, b in zip(fp32, bf16)) < 0.1  # bf16 keeps ~3 significant digits


def test_predictions_carry_every_class_score_in_label_order(tiny_dir, ferplus_faces):
    preds = FERPredictor(tiny_dir, device="cpu").predict(list(ferplus_faces[0][:3]))
    assert [list(p["scores"]) for p in preds] == [list(FERPLUS_LABELS)] * 3
    for p in preds:
        assert sum(p["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert p["score"] == max(p["scores"].values())


def test_a_saved_mae_for_pretraining_is_refused_as_not_an_image_classifier(tmp_path):
    from transformers import ViTMAEForPreTraining

    ViTMAEForPreTraining(tiny_mae_config()).save_pretrained(tmp_path)
    with pytest.raises(NotAnImageClassifierError, match="ViTMAEForPreTraining"):
        FERPredictor(tmp_path, device="cpu")


@pytest.mark.parametrize(
    "config",
    [{"hello": "world"}, {"model_type": "bert", "architectures": ["BertForMaskedLM"]}],
    ids=["random", "bert"],
)
def test_a_directory_with_a_foreign_config_is_refused_with_a_clear_error(tmp_path, config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(NotAnImageClassifierError, match=str(tmp_path)):
        FERPredictor(tmp_path, device="cpu")


def test_a_directory_without_config_is_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(NotAnImageClassifierError, match="no config.json"):
        FERPredictor(tmp_path, device="cpu")
