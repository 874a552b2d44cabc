import json

import numpy as np
import pytest

from modeling.cli import run_main
from modeling.evaluation.metrics import dedup_metrics
from modeling.inference.evaluate import class_mapping, evaluate_split, hardest_mistakes, main, to_array
from modeling.inference.predictor import FERPredictor
from modeling.labels import FERPLUS_LABELS, RAFDB_LABELS
from tests.tiny import tiny_mae_config
from tests.tiny_classifier import save_tiny_classifier


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, ferplus_faces):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny_fer"), calibration=ferplus_faces[0][:64])


@pytest.fixture(scope="module")
def mini_test_split(ferplus_mini_dir, tmp_path_factory):
    data = pytest.importorskip("modeling.data")
    return data.load_fer_dataset("ferplus", ferplus_mini_dir, cache_dir=tmp_path_factory.mktemp("cache"))["test"]


def test_evaluate_cli_writes_metrics_confusion_matrix_and_hardest_examples_on_real_ferplus(
    tiny_dir, ferplus_mini_dir, tmp_path, capsys
):
    pytest.importorskip("modeling.data")
    out = tmp_path / "report"
    args = [str(tiny_dir), "--dataset_name", "ferplus", "--data_dir", str(ferplus_mini_dir), "--split", "test"]
    assert main([*args, "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"), "--batch_size", "16"]) == 0

    report = json.loads((out / "eval_ferplus_test.json").read_text())
    assert report["num_examples"] == 40 and report["labels"] == list(FERPLUS_LABELS)
    assert set(report["per_class_recall"]) == set(FERPLUS_LABELS)
    assert np.asarray(report["confusion_matrix"]).sum() == 40
    assert (out / "confusion_matrix_ferplus_test.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "hardest_ferplus_test.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert f"accuracy           {report['accuracy']:.4f}" in printed and "recall neutral" in printed
    # mini/ test has no pixel copy of a train or validation face: the de-duplicated figures are the same
    assert report["dedup_samples"] == 40 and report["dedup_accuracy"] == report["accuracy"]
    assert "de-duplicated: 40 examples without an exact pixel copy in another split" in printed


def test_evaluate_reports_the_metrics_without_the_faces_that_have_a_pixel_copy_in_another_split(
    tiny_dir, ferplus_mini_dir, tmp_path
):
    data = pytest.importorskip("modeling.data")
    cache = tmp_path / "cache"
    args = [str(tiny_dir), "--dataset_name", "ferplus", "--data_dir", str(ferplus_mini_dir), "--split", "validation"]
    assert main([*args, "--output_dir", str(tmp_path), "--cache_dir", str(cache), "--num_hardest", "0"]) == 0
    report = json.loads((tmp_path / "eval_ferplus_validation.json").read_text())

    splits = data.load_fer_dataset("ferplus", ferplus_mini_dir, cache_dir=cache)
    duplicate = data.find_duplicate_mask(splits, "validation")
    assert duplicate.sum() == 2  # mini/ validation holds two faces of its train split
    out = evaluate_split(FERPredictor(tiny_dir, device="cpu", precision="fp32"), splits["validation"], batch_size=16)
    assert report["dedup_samples"] == 38
    assert report["dedup_accuracy"] == pytest.approx(np.mean(out["preds"][~duplicate] == out["refs"][~duplicate]))


def test_evaluate_reads_the_duplicates_from_the_preparation_report_instead_of_searching_again(
    tiny_dir, ferplus_mini_dir, tmp_path, monkeypatch
):
    data = pytest.importorskip("modeling.data")
    from modeling.data import duplicates

    cache = tmp_path / "cache"
    splits = data.load_fer_dataset("ferplus", ferplus_mini_dir, cache_dir=cache)  # prepares: the report's search
    searched = data.find_duplicate_mask(splits, "validation")

    def search_again(*args, **kwargs):
        raise AssertionError("searched the splits again")

    monkeypatch.setattr(duplicates, "cross_split_duplicates", search_again)
    args = [str(tiny_dir), "--dataset_name", "ferplus", "--data_dir", str(ferplus_mini_dir), "--split", "validation"]
    assert main([*args, "--output_dir", str(tmp_path), "--cache_dir", str(cache), "--num_hardest", "0"]) == 0
    report = json.loads((tmp_path / "eval_ferplus_validation.json").read_text())
    out = evaluate_split(FERPredictor(tiny_dir, device="cpu", precision="fp32"), splits["validation"], batch_size=16)
    assert searched.sum() == 2 and report["dedup_samples"] == 38
    assert report["dedup_accuracy"] == pytest.approx(np.mean(out["preds"][~searched] == out["refs"][~searched]))


def test_dedup_metrics_leave_out_the_flagged_rows_and_report_no_metric_when_none_is_left():
    preds, refs = np.array([0, 1, 1, 0, 2]), np.array([0, 1, 0, 0, 1])
    m = dedup_metrics(preds, refs, np.array([False, False, True, False, True]), num_labels=3)
    assert m == {"dedup_samples": 3, "dedup_accuracy": 1.0, "dedup_balanced_accuracy": 1.0, "dedup_macro_f1": 1.0}
    assert dedup_metrics(preds, refs, np.ones(5, bool), num_labels=3) == {"dedup_samples": 0}
    with pytest.raises(ValueError, match="4 duplicate flags for 5"):
        dedup_metrics(preds, refs, np.zeros(4, bool), num_labels=3)


def test_a_model_with_another_label_order_is_scored_by_class_name(tmp_path, ferplus_faces, mini_test_split):
    model_dir = save_tiny_classifier(tmp_path, labels=RAFDB_LABELS, calibration=ferplus_faces[0][:64])
    predictor = FERPredictor(model_dir, device="cpu")
    out = evaluate_split(predictor, mini_test_split, batch_size=16)

    raw = predictor.predict_proba([to_array(im) for im in mini_test_split["image"]])
    expected = [FERPLUS_LABELS.index(RAFDB_LABELS[i]) for i in raw.argmax(axis=1)]
    assert out["preds"].tolist() == expected
    assert out["probs"][:, FERPLUS_LABELS.index("contempt")].max() == 0.0  # a class the model does not know
    assert out["refs"].tolist() == list(mini_test_split["label"])


def test_class_mapping_keeps_shared_names_and_refuses_disjoint_label_sets():
    kept, target = class_mapping(["b", "x", "a"], ["a", "b", "c"])
    assert (kept, target) == ([0, 2], [1, 0])
    with pytest.raises(ValueError, match="share no name"):
        class_mapping(["x"], ["a"])


def test_hardest_mistakes_are_the_wrong_ones_with_the_lowest_true_class_probability():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95]])
    preds, refs = probs.argmax(1), np.array([0, 0, 0, 0])
    assert hardest_mistakes(probs, preds, refs, k=2) == [3, 1]


def test_evaluate_refuses_an_mae_checkpoint_with_a_clear_message(tmp_path, capsys):
    from transformers import ViTMAEForPreTraining

    ViTMAEForPreTraining(tiny_mae_config()).save_pretrained(tmp_path)
    argv = [str(tmp_path), "--dataset_name", "ferplus", "--output_dir", str(tmp_path / "o")]
    assert run_main(lambda: main(argv), "python -m modeling.inference.evaluate") == 2
    (line,) = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("python -m modeling.inference.evaluate")
    ]
    assert line.startswith("python -m modeling.inference.evaluate: error: ") and "not an image classifier" in line
