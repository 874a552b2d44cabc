"""experiments/score_independently.py: the FER+ test split scored with plain transformers and its own label rule."""

import csv
import json

import torch
from transformers import ViTForImageClassification

from modeling.data.ferplus_votes import majority
from modeling.labels import FERPLUS_LABELS
from modeling.models.sizes import image_processor_for
from tests.experiments import load_experiment
from tests.tiny import tiny_vit_config


def load_script():
    return load_experiment("score_independently")


def test_its_majority_rule_keeps_the_faces_and_classes_the_package_keeps(ferplus_mini_dir):
    script = load_script()
    label_csv = ferplus_mini_dir / "FER2013Test" / "label.csv"
    theirs = dict(script.majority_labels(label_csv))
    ours = {}
    with open(label_csv, newline="") as f:
        for row in csv.reader(f):
            target = majority([int(v) for v in row[2:]])
            if target.label is not None:
                ours[row[0]] = FERPLUS_LABELS[target.label]
    assert theirs == ours and len(theirs) > 10


def test_a_model_that_always_answers_happiness_scores_the_share_of_happy_faces(ferplus_mini_dir, tmp_path):
    script = load_script()
    config = tiny_vit_config(FERPLUS_LABELS, image_size=48, patch_size=6)
    config.grayscale_input = True
    model = ViTForImageClassification(config)
    with torch.no_grad():  # whatever the face: happiness
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(1), len(FERPLUS_LABELS)).float())
    model.save_pretrained(tmp_path / "model")
    image_processor_for(48).save_pretrained(tmp_path / "model")
    out = tmp_path / "score.json"
    report = script.main([str(tmp_path / "model"), "--data_dir", str(ferplus_mini_dir), "--output", str(out)])
    labels = [label for _, label in script.majority_labels(ferplus_mini_dir / "FER2013Test" / "label.csv")]
    assert report["num_faces"] == len(labels)
    assert abs(report["accuracy"] - labels.count("happiness") / len(labels)) < 1e-12
    assert abs(report["balanced_accuracy"] - 1 / len(set(labels))) < 1e-12  # recall 1 for one class, 0 elsewhere
    assert "gray" in report["path"] and json.loads(out.read_text())["confusion"] == report["confusion"]


def save_constant_model(path, label: int = 1):
    """A tiny FER+ ViT that answers ``FERPLUS_LABELS[label]`` whatever the face, with the package's processor."""
    config = tiny_vit_config(FERPLUS_LABELS, image_size=48, patch_size=6)
    config.grayscale_input = True
    model = ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(label), len(FERPLUS_LABELS)).float())
    model.save_pretrained(path)
    image_processor_for(48).save_pretrained(path)
    return path


def test_the_validation_split_is_read_from_its_own_folder(ferplus_mini_dir, tmp_path):
    script = load_script()
    model = save_constant_model(tmp_path / "model", label=0)  # neutral
    report = script.main([str(model), "--data_dir", str(ferplus_mini_dir), "--split", "valid"])
    labels = [label for _, label in script.majority_labels(ferplus_mini_dir / "FER2013Valid" / "label.csv")]
    assert "FER2013Valid" in report["data"] and report["num_faces"] == len(labels)
    assert abs(report["accuracy"] - labels.count("neutral") / len(labels)) < 1e-12


def test_photo_like_conditions_keep_the_faces_and_score_each_model(ferplus_mini_dir, tmp_path):
    import numpy as np

    photo_like = load_experiment("photo_like")
    faces, truth = photo_like.load_faces(ferplus_mini_dir, "valid", limit=12)
    face = faces[0]
    assert face.shape == (48, 48) and face.dtype == np.uint8
    for name, change in photo_like.CONDITIONS.items():
        out = change(face)
        assert out.dtype == np.uint8 and out.ndim == 2, name
    assert photo_like.CONDITIONS["larger"](face).shape == (192, 192)
    assert photo_like.CONDITIONS["jpeg"](face).shape == (192, 192)
    assert photo_like.CONDITIONS["dark"](face).mean() < face.mean() < photo_like.CONDITIONS["bright"](face).mean()
    assert photo_like.CONDITIONS["low contrast"](face).std() < face.std()
    assert not np.array_equal(photo_like.CONDITIONS["blur"](face), photo_like.CONDITIONS["larger"](face))
    model = save_constant_model(tmp_path / "model", label=1)  # happiness
    report = photo_like.main([str(model), "--data_dir", str(ferplus_mini_dir), "--limit", "12"])
    share = truth.count("happiness") / len(truth)
    assert report["faces"] == 12 and list(report["models"][str(model)]) == list(photo_like.CONDITIONS)
    for name, row in report["models"][str(model)].items():  # a constant model: the share, whatever the change
        assert abs(row["accuracy"] - share) < 1e-12, name
