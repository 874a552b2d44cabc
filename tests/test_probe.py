"""Linear probing (modeling/training/probe.py): the probe separates what is separable, and runs on real FER+ faces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import ViTForImageClassification

from modeling.data import load_fer_dataset
from modeling.models.mae import build_mae_for_pretraining
from modeling.models.sizes import IMAGENET_MEAN, IMAGENET_STD
from modeling.training.probe import encoder_features, face_batches, linear_probe, main
from tests.tiny import tiny_mae_config, tiny_vit_config


def blobs(n: int, classes: int, dim: int, seed: int, separation: float):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * separation
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + torch.randn(n, dim, generator=g), y


def test_probe_separates_separable_classes_and_not_shuffled_labels():
    x, y = blobs(800, 4, 16, seed=0, separation=3.0)
    ex, ey = blobs(400, 4, 16, seed=0, separation=3.0)  # same centres (same seed), fresh points below
    ex = ex + torch.randn(ex.shape, generator=torch.Generator().manual_seed(1)) * 0.1
    good = linear_probe(x, y, ex, ey, num_classes=4)
    assert good.accuracy > 0.95 and good.balanced_accuracy > 0.95
    assert (good.feature_dim, good.train_faces, good.eval_faces) == (16, 800, 400)
    shuffled = linear_probe(x, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(2))], ex, ey, 4)
    assert shuffled.accuracy < 0.5  # nothing to learn: about chance (0.25)
    assert linear_probe(x, y, ex, ey, num_classes=4).accuracy == good.accuracy  # deterministic


def test_probe_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe(torch.zeros(5, 3), torch.zeros(4, dtype=torch.long), torch.zeros(2, 3), torch.zeros(2).long(), 2)


def test_features_of_real_faces_keep_order_and_shape(ferplus_mini_dir: Path, tmp_path: Path):
    splits = load_fer_dataset("ferplus", ferplus_mini_dir, cache_dir=tmp_path)
    valid = splits["validation"]
    batches = face_batches(valid, 32, IMAGENET_MEAN, IMAGENET_STD, batch_size=16)
    model = ViTForImageClassification(tiny_vit_config(valid.features["label"].names))
    x, y = encoder_features(model, batches)
    assert x.shape == (len(valid), 2 * model.config.hidden_size)
    assert y.tolist() == valid["label"]
    pixels, y2 = encoder_features(None, batches)
    assert pixels.shape == (len(valid), 32 * 32) and torch.equal(y, y2)
    assert torch.isfinite(x).all() and x.std() > 0


def test_cli_probes_an_mae_against_random_init_and_pixels(ferplus_mini_dir: Path, tmp_path: Path, capsys):
    mae_dir = tmp_path / "mae"
    build_mae_for_pretraining(tiny_mae_config()).save_pretrained(mae_dir)
    report = main([str(mae_dir), "--dataset_name", "ferplus", "--data_dir", str(ferplus_mini_dir),
                   "--cache_dir", str(tmp_path / "cache"), "--random", "--pixels"])  # fmt: skip
    assert list(report) == [str(mae_dir), "random_init", "pixels"]
    n_valid = len(load_fer_dataset("ferplus", ferplus_mini_dir, cache_dir=tmp_path / "cache")["validation"])
    for result in report.values():
        assert result["eval_faces"] == n_valid and 0.0 <= result["accuracy"] <= 1.0
    assert report[str(mae_dir)]["feature_dim"] == 64 and report["pixels"]["feature_dim"] == 32 * 32
    assert json.loads(capsys.readouterr().out) == report
