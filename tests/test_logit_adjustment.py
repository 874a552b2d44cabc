"""modeling/training/logit_adjustment.py: the training prior as drawn, tau chosen on validation, the shift in the
bias."""

import numpy as np
import pytest
import torch

from modeling.labels import FERPLUS_LABELS
from modeling.training.logit_adjustment import (
    adjust,
    choose_tau,
    fold_into_classifier,
    log_prior_shift,
    training_prior,
)
from modeling.training.sampling import class_weights
from tests.tiny import tiny_vit_config


def test_training_prior_counts_labels_as_the_sampler_draws_them():
    labels = np.array([0] * 8 + [1] * 2)
    assert training_prior(labels, 3) == pytest.approx([0.8, 0.2, 0.0])
    # the "inverse" sampler draws both classes equally often: nothing left to undo
    assert training_prior(labels, 3, class_weights(labels, "inverse")) == pytest.approx([0.5, 0.5, 0.0])
    # vote distributions: the mean target, weighted by the draw weights
    soft = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert training_prior(soft, 2) == pytest.approx([0.5, 0.5])
    assert training_prior(soft, 2, np.array([2.0, 1.0, 1.0])) == pytest.approx([2.5 / 4, 1.5 / 4])


@pytest.mark.parametrize(
    "targets, weights",
    [(np.array([0.5, 1.0]), None), (np.array([0, 3]), None), (np.zeros((2, 4)), None), (np.array([0, 1]), [1.0])],
)
def test_training_prior_rejects_targets_it_cannot_read(targets, weights):
    with pytest.raises(ValueError):
        training_prior(targets, 3, weights)


def test_tau_is_chosen_by_accuracy_and_balanced_accuracy_and_lifts_an_under_predicted_class():
    # class 1 is rare in training (prior 0.1); the model's logits carry that prior, so its faces lose to class 0
    rng = np.random.default_rng(0)
    references = np.array([0] * 60 + [1] * 40)
    prior = np.array([0.9, 0.1])
    evidence = np.where(references[:, None] == np.arange(2), 1.0, 0.0) + rng.normal(0, 0.3, (100, 2))
    logits = evidence + np.log(prior)
    tau, rows = choose_tau(logits, references, prior)
    assert rows[0]["tau"] == 0 and rows[0]["balanced_accuracy"] < 0.8  # unadjusted: class 1 mostly missed
    best = next(r for r in rows if r["tau"] == tau)
    assert tau > 0 and best["balanced_accuracy"] > rows[0]["balanced_accuracy"] + 0.1
    assert all(best["accuracy"] + best["balanced_accuracy"] >= r["accuracy"] + r["balanced_accuracy"] for r in rows)


def test_tau_stays_zero_when_no_shift_helps():
    references = np.array([0, 1, 2, 0])
    logits = np.eye(3)[references] * 10.0  # already right, by a wide margin
    tau, rows = choose_tau(logits, references, np.array([0.5, 0.25, 0.25]))
    assert tau == 0.0 and rows[0]["accuracy"] == 1.0  # ties go to the least change


def test_the_shift_folded_into_the_bias_moves_every_logit_by_exactly_minus_tau_log_prior():
    from transformers import ViTForImageClassification

    torch.manual_seed(0)
    model = ViTForImageClassification(tiny_vit_config(FERPLUS_LABELS)).eval()
    pixels = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        before = model(pixel_values=pixels).logits
    prior = np.linspace(1, 8, 8) / np.linspace(1, 8, 8).sum()
    fold_into_classifier(model, log_prior_shift(prior, 0.7))
    with torch.no_grad():
        after = model(pixel_values=pixels).logits
    expected = torch.as_tensor(-0.7 * np.log(prior), dtype=torch.float32)
    torch.testing.assert_close(after - before, expected.expand(5, 8), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="Linear classifier"):
        fold_into_classifier(model, np.zeros(3))


def test_adjust_records_the_choice_in_the_config_so_it_survives_save_and_load(tmp_path):
    from transformers import AutoModelForImageClassification, ViTForImageClassification

    torch.manual_seed(0)
    model = ViTForImageClassification(tiny_vit_config(FERPLUS_LABELS)).eval()
    references = np.arange(8).repeat(4)
    logits = np.eye(8)[references] + np.log(np.r_[0.5, np.full(7, 0.5 / 7)])  # class 0 over-predicted
    record = adjust(model, logits, references, np.r_[0.5, np.full(7, 0.5 / 7)])
    assert record["tau"] > 0 and record["chosen_on"] == "validation" and len(record["grid"]) == 41
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    saved = loaded.config.logit_adjustment
    assert saved["tau"] == record["tau"] and saved["bias_shift"] == record["bias_shift"] and "grid" not in saved
    torch.testing.assert_close(loaded.classifier.bias, model.classifier.bias)
