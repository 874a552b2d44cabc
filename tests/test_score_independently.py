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
