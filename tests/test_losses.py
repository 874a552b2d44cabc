"""Soft-target cross-entropy and smoothed one-hot targets, checked by hand and against torch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modeling.training.losses import smooth_one_hot, soft_target_cross_entropy


def test_smooth_one_hot_puts_the_smoothing_mass_evenly_and_rows_sum_to_one():
    targets = smooth_one_hot(torch.tensor([2, 0]), num_classes=4, smoothing=0.2)
    expected = torch.tensor([[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]])
    torch.testing.assert_close(targets, expected)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(2))


def test_smooth_one_hot_without_smoothing_is_one_hot():
    labels = torch.tensor([1, 3, 0])
    torch.testing.assert_close(smooth_one_hot(labels, 4), F.one_hot(labels, 4).float())


def test_soft_target_cross_entropy_matches_a_hand_computation():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [1/4, 3/4]
    targets = torch.tensor([[0.5, 0.5]])
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert soft_target_cross_entropy(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_soft_target_cross_entropy_of_smoothed_one_hots_equals_torch_label_smoothing():
    torch.manual_seed(0)
    logits = torch.randn(16, 7)
    labels = torch.randint(0, 7, (16,))
    ours = soft_target_cross_entropy(logits, smooth_one_hot(labels, 7, 0.1))
    torch.testing.assert_close(ours, F.cross_entropy(logits, labels, label_smoothing=0.1))
    torch.testing.assert_close(
        soft_target_cross_entropy(logits, smooth_one_hot(labels, 7)), F.cross_entropy(logits, labels)
    )


def test_soft_target_cross_entropy_rejects_mismatched_shapes_and_bad_labels():
    with pytest.raises(ValueError, match="one shape"):
        soft_target_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="labels must lie"):
        smooth_one_hot(torch.tensor([0, 5]), 3)
    with pytest.raises(ValueError, match="smoothing"):
        smooth_one_hot(torch.tensor([0]), 3, smoothing=1.0)
