"""Train/eval/pretrain transforms (shapes, channels, determinism) and batch mixup/cutmix targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modeling.training.transforms import (
    MixupCutmix,
    build_eval_transform,
    build_mae_pretrain_transform,
    build_train_transform,
    cutmix_box,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def gray_face(size: int = 48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8), mode="L")


@pytest.mark.parametrize("augmentation", ["none", "regular", "mae"])
def test_train_transforms_turn_a_grayscale_image_into_a_normalised_3_channel_float_tensor(augmentation):
    torch.manual_seed(0)
    out = build_train_transform(augmentation, 32, MEAN, STD)(gray_face())
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_train_transforms_accept_rgb_images_and_uint8_tensors():
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    assert build_train_transform("regular", 32, MEAN, STD)(rgb).shape == (3, 32, 32)
    gray_tensor = torch.randint(0, 256, (1, 48, 48), dtype=torch.uint8)
    assert build_train_transform("mae", 32, MEAN, STD)(gray_tensor).shape == (3, 32, 32)


def test_the_eval_transform_is_deterministic_and_normalises_with_the_given_statistics():
    transform = build_eval_transform(32, MEAN, STD)
    a, b = transform(gray_face()), transform(gray_face())
    assert torch.equal(a, b) and a.shape == (3, 32, 32)
    white = Image.new("L", (48, 48), 255)
    expected = torch.tensor([(1 - m) / s for m, s in zip(MEAN, STD)])
    torch.testing.assert_close(transform(white)[:, 0, 0], expected)
    assert torch.equal(build_train_transform("none", 32, MEAN, STD)(gray_face()), a)


def test_regular_augmentation_varies_between_calls_and_every_knob_is_overridable():
    transform = build_train_transform("regular", 32, MEAN, STD)
    torch.manual_seed(0)
    outs = [transform(gray_face()) for _ in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    off = build_train_transform(
        "regular", 32, MEAN, STD, hflip=0.0, jitter_p=0.0, affine_p=0.0, erasing_p=0.0
    )  # every random step disabled: the eval pipeline
    assert torch.equal(off(gray_face()), build_eval_transform(32, MEAN, STD)(gray_face()))
    with pytest.raises(ValueError, match="Unknown knobs"):
        build_train_transform("regular", 32, MEAN, STD, rotation=10)
    with pytest.raises(ValueError, match="Unknown augmentation"):
        build_train_transform("autoaugment", 32, MEAN, STD)


def test_mae_pretrain_transform_crops_to_size_with_three_channels():
    out = build_mae_pretrain_transform(32, MEAN, STD)(gray_face(100))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_mixup_targets_sum_to_one_and_mix_two_one_hots_with_its_lambda():
    mixer = MixupCutmix(num_classes=4, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0, seed=0)
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    mixed, targets = mixer(images, labels)
    lam = mixer.last_lam
    assert mixer.last_mode == "mixup" and 0.0 < lam < 1.0
    assert targets.shape == (4, 4) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))
    expected = torch.zeros(4, 4)
    for i in range(4):  # each sample mixes with the batch flipped: i with 3 - i
        expected[i, labels[i]] += lam
        expected[i, labels[3 - i]] += 1 - lam
    torch.testing.assert_close(targets, expected)
    torch.testing.assert_close(mixed, lam * images + (1 - lam) * images.flip(0))


def test_cutmix_lambda_is_corrected_to_the_pasted_box_area():
    mixer = MixupCutmix(num_classes=3, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, seed=3)
    images = torch.stack([torch.zeros(3, 16, 16), torch.ones(3, 16, 16)])
    mixed, targets = mixer(images, torch.tensor([0, 1]))
    assert mixer.last_mode == "cutmix"
    pasted = mixed[0, 0].mean().item()  # fraction of sample 0 covered by sample 1's ones
    assert mixer.last_lam == pytest.approx(1 - pasted)
    torch.testing.assert_close(targets[0], torch.tensor([mixer.last_lam, 1 - mixer.last_lam, 0.0]))


def test_cutmix_box_is_clipped_to_the_image():
    rng = np.random.default_rng(0)
    for lam in (0.0, 0.3, 0.9, 1.0):
        y0, y1, x0, x1 = cutmix_box(10, 12, lam, rng)
        assert 0 <= y0 <= y1 <= 10 and 0 <= x0 <= x1 <= 12


def test_mixup_with_label_smoothing_and_soft_labels_keeps_distributions():
    mixer = MixupCutmix(num_classes=5, seed=1)  # MAE recipe: mixup 0.8, cutmix 1.0, switch 0.5, smoothing 0.1
    _, targets = mixer(torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0]))
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(6))
    assert targets.min() >= 0.1 / 5 - 1e-6  # smoothing mass reaches every class
    soft = torch.softmax(torch.randn(6, 5), dim=1)
    _, soft_targets = mixer(torch.randn(6, 3, 8, 8), soft)
    torch.testing.assert_close(soft_targets.sum(dim=1), torch.ones(6))


def test_mixup_is_seeded():
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    runs = []
    for _ in range(2):
        mixer = MixupCutmix(num_classes=3, seed=42)
        runs.append([mixer(images, labels) for _ in range(5)])
    for (xa, ta), (xb, tb) in zip(*runs):
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
