"""experiments/logit_adjustment_grid.py on FER+ mini/: the validation faces, the training prior as drawn, the grid."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_classifier import save_tiny_classifier

ROOT = Path(__file__).resolve().parents[1]


def test_grid_scores_the_validation_faces_with_the_runs_prior_and_tau_zero_is_the_model_as_trained(
    ferplus_mini_dir, tmp_path
):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from modeling.data import load_fer_dataset
    from modeling.training.logit_adjustment import training_prior
    from modeling.training.sampling import class_weights

    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import logit_adjustment_grid
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    cache = tmp_path / "cache"
    valid = load_fer_dataset("ferplus", ferplus_mini_dir, cache_dir=cache)["validation"]
    calibration = np.stack([np.asarray(im.convert("L").resize((32, 32))) for im in valid["image"][:24]])
    model_dir = save_tiny_classifier(tmp_path / "model", calibration=calibration)  # predictions spread over classes
    out = tmp_path / "grid.json"
    result = logit_adjustment_grid.main([str(model_dir), "--data_dir", str(ferplus_mini_dir), "--cache_dir",
                                         str(cache), "--train_config", "probability", "--sampler", "sqrt",
                                         "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == result
    assert result["faces"] == len(valid) == 40 and len(result["grid"]) == 41

    train = load_fer_dataset("ferplus", ferplus_mini_dir, config="probability", cache_dir=cache)["train"]
    prior = training_prior(np.asarray(train["soft_label"]), 8, class_weights(np.asarray(train["label"]), "sqrt"))
    assert result["prior"]["values"] == pytest.approx(prior, abs=1e-6)

    # tau 0: the model's own argmax, computed here through its processor
    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    rgb = [Image.fromarray(np.asarray(im.convert("RGB"))) for im in valid["image"]]
    with torch.no_grad():
        predicted = model(**processor(rgb, return_tensors="pt")).logits.argmax(-1).numpy()
    assert result["grid"][0]["tau"] == 0
    assert result["grid"][0]["accuracy"] == pytest.approx((predicted == np.asarray(valid["label"])).mean())
    chosen = next(r for r in result["grid"] if r["tau"] == result["chosen_tau"])
    best = max(r["accuracy"] + r["balanced_accuracy"] for r in result["grid"])
    assert chosen["accuracy"] + chosen["balanced_accuracy"] == pytest.approx(best)
