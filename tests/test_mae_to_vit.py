import json

import pytest
import torch

from modeling.labels import FERPLUS_LABELS
from modeling.models.mae import build_mae_for_pretraining, identity_noise
from modeling.models.mae_to_vit import MAE_ONLY_FIELDS, mae_to_classifier
from modeling.models.sizes import image_processor_for
from tests.tiny import tiny_mae_config


@pytest.fixture()
def mae():
    torch.manual_seed(0)
    model = build_mae_for_pretraining(tiny_mae_config(mask_ratio=0.75))
    # Non-trivial weights everywhere, so that a missed tensor shows up as a difference.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_classifier_encoder_equals_the_mae_encoder(mae):
    clf = mae_to_classifier(mae, FERPLUS_LABELS).eval()
    x = torch.randn(3, 3, 32, 32)
    mae.config.mask_ratio = 0.0
    with torch.no_grad():
        ref = mae.vit(pixel_values=x, noise=identity_noise(3, 16)).last_hidden_state
        got = clf.vit(pixel_values=x).last_hidden_state
    assert (ref - got).abs().max().item() <= 1e-6


def test_conversion_from_a_directory_gives_a_clean_reloadable_classifier(mae, tmp_path):
    from transformers import AutoModelForImageClassification, pipeline

    mae.save_pretrained(tmp_path / "mae")
    clf = mae_to_classifier(tmp_path / "mae", FERPLUS_LABELS)
    clf.save_pretrained(tmp_path / "clf")
    image_processor_for(32).save_pretrained(tmp_path / "clf")

    saved = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert saved["model_type"] == "vit"
    assert not set(MAE_ONLY_FIELDS) & set(saved)
    assert saved["id2label"]["7"] == "contempt"

    reloaded, info = AutoModelForImageClassification.from_pretrained(tmp_path / "clf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    torch.testing.assert_close(reloaded.classifier.weight, clf.classifier.weight)

    from PIL import Image

    classify = pipeline("image-classification", model=str(tmp_path / "clf"), device="cpu")
    out = classify(Image.new("RGB", (48, 48), (120, 90, 60)), top_k=8)
    assert {o["label"] for o in out} == set(FERPLUS_LABELS)


def test_head_starts_near_zero_as_in_mae_finetuning(mae):
    clf = mae_to_classifier(mae, ["a", "b"])
    assert clf.classifier.weight.std() < 1e-4 and clf.classifier.bias.abs().sum() == 0


def test_a_directory_that_is_not_an_mae_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        mae_to_classifier(tmp_path, FERPLUS_LABELS)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match="not 'vit_mae'"):
        mae_to_classifier(tmp_path, FERPLUS_LABELS)
