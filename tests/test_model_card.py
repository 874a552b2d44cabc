import json

import pytest
from huggingface_hub import ModelCard

from modeling.labels import FERPLUS_LABELS
from modeling.model_card import TEMPLATE_PATH, write_model_card
from tests.tiny_classifier import save_tiny_classifier

ALL_RESULTS = {
    "epoch": 30.0,
    "eval_accuracy": 0.8912,
    "eval_balanced_accuracy": 0.7321,
    "eval_macro_f1": 0.7012,
    "eval_loss": 0.412,
    "eval_samples": 3191,
    "test_accuracy": 0.8843,
    "test_balanced_accuracy": 0.7155,
    "test_macro_f1": 0.6934,
    "test_loss": 0.431,
    "test_samples": 3137,
    "test_per_class_recall": [0.91, 0.95, 0.9, 0.8, 0.85, 0.5, 0.52, 0.3],
    "train_loss": 0.35,
    "train_runtime": 1234.5,
}
RAFDB_REPORT = {
    "dataset_name": "rafdb",
    "dataset_config_name": None,
    "split": "test",
    "num_examples": 3068,
    "accuracy": 0.6021,
    "balanced_accuracy": 0.5502,
    "macro_f1": 0.5233,
}


@pytest.fixture
def card_path(tmp_path):
    save_tiny_classifier(tmp_path)
    (tmp_path / "confusion_matrix_ferplus_test.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "all_results.json").write_text(json.dumps(ALL_RESULTS))
    results = json.loads((tmp_path / "all_results.json").read_text())
    return write_model_card(
        tmp_path,
        results,
        dataset_name="ferplus",
        model_name="fer-vit-tiny-ferplus",
        repo_id="someone/fer-vit-tiny-ferplus",
        base_model="someone/mae-vit-tiny-affectnet",
        details={"pretraining": "MAE, 300 epochs", "fine-tuning": "AdamW, lr 5e-4, layer decay 0.65"},
        extra_evaluations=[RAFDB_REPORT],
    )


def test_the_card_loads_and_its_model_index_parses_back_to_the_measured_numbers(card_path):
    card = ModelCard.load(card_path)
    got = {(r.dataset_type, r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    expected = {}
    for prefix, split in (("eval", "validation"), ("test", "test")):
        for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
            expected[("ferplus", split, metric)] = ALL_RESULTS[f"{prefix}_{metric}"]
    for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
        expected[("rafdb", "test", metric)] = RAFDB_REPORT[metric]
    assert got == expected
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-classification"
    assert card.data.base_model == "someone/mae-vit-tiny-affectnet" and card.data.license == "apache-2.0"
    assert card.data.datasets == ["ferplus", "rafdb"]


def test_the_model_index_has_one_result_per_dataset_and_split(card_path):
    model_index = ModelCard.load(card_path).data.to_dict()["model-index"]
    results = model_index[0]["results"]
    assert [(r["dataset"]["type"], r["dataset"]["split"]) for r in results] == [
        ("ferplus", "validation"),
        ("ferplus", "test"),
        ("rafdb", "test"),
    ]
    assert all(len(r["metrics"]) == 3 for r in results)


def test_the_rendered_markdown_states_the_label_order_usage_risks_and_citation(card_path):
    text = card_path.read_text()
    for i, name in enumerate(FERPLUS_LABELS):
        assert f"| {i} | {name} |" in text
    assert 'pipeline("image-classification", model="someone/fer-vit-tiny-ferplus")' in text
    assert "fer-predict someone/fer-vit-tiny-ferplus" in text
    assert "![Confusion matrix](confusion_matrix_ferplus_test.png)" in text
    assert "| contempt | 0.3000 |" in text  # per-class recall from test_per_class_recall
    for phrase in (
        "Label noise",
        "Demographic bias",
        "Dataset licences",
        "EU AI Act",
        "arXiv:2207.11081",
        "ViTForImageClassification",
    ):
        assert phrase in text
    assert "{{" not in text and "{%" not in text


def test_the_template_is_a_file_in_model_cards():
    assert TEMPLATE_PATH.name == "TEMPLATE.md" and TEMPLATE_PATH.parent.name == "model_cards"
    assert "{{ card_data }}" in TEMPLATE_PATH.read_text()


def test_a_card_without_labels_is_refused(tmp_path):
    with pytest.raises(ValueError, match="No labels"):
        write_model_card(tmp_path, ALL_RESULTS, dataset_name="ferplus")
