import math

import numpy as np
import pytest

from modeling.evaluation.metrics import FERMetrics, confusion_matrix, fer_metrics, make_compute_metrics, scalar_metrics

# 4 classes; class 3 occurs in the references but is never predicted, class 2 never occurs at all.
REFS = [0, 0, 0, 1, 1, 3, 3, 3, 3, 0]
PREDS = [0, 0, 1, 1, 0, 0, 1, 1, 0, 0]


def test_confusion_matrix_rows_are_truth_and_columns_predictions():
    cm = confusion_matrix(PREDS, REFS, 4)
    assert cm.tolist() == [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [2, 2, 0, 0]]


def test_metrics_equal_hand_computed_values_with_a_never_predicted_class():
    m = fer_metrics(PREDS, REFS, 4)
    assert m["accuracy"] == pytest.approx(4 / 10)
    # recalls: class0 3/4, class1 1/2, class2 undefined, class3 0/4
    assert m["per_class_recall"][0] == pytest.approx(0.75)
    assert m["per_class_recall"][1] == pytest.approx(0.5)
    assert math.isnan(m["per_class_recall"][2])
    assert m["per_class_recall"][3] == 0.0
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    # precision: class0 3/6, class1 1/4; F1: class0 2*.5*.75/1.25 = .6, class1 2*.25*.5/.75 = 1/3, class3 0
    assert m["per_class_f1"][0] == pytest.approx(0.6)
    assert m["per_class_f1"][1] == pytest.approx(1 / 3)
    assert m["macro_f1"] == pytest.approx((0.6 + 1 / 3 + 0.0) / 3)
    assert m["support"] == [4, 2, 0, 4]


def test_evaluate_metric_works_offline_and_matches_the_pure_function():
    metric = FERMetrics(num_labels=4)
    for p, r in zip(PREDS, REFS):
        metric.add(predictions=p, references=r)
    out = metric.compute()
    assert out["accuracy"] == pytest.approx(0.4)
    assert out["confusion_matrix"] == confusion_matrix(PREDS, REFS, 4).tolist()


def test_out_of_range_labels_are_refused():
    with pytest.raises(ValueError, match="outside 0..3"):
        fer_metrics([0, 4], [0, 1], 4)


def test_compute_metrics_for_the_trainer_accepts_logits_and_soft_labels():
    class EvalPred:
        def __init__(self, predictions, label_ids):
            self.predictions, self.label_ids = predictions, label_ids

    logits = np.eye(4)[PREDS] * 5.0
    names = {0: "neutral", 1: "happiness", 2: "surprise", 3: "sadness"}
    fn = make_compute_metrics(4, names)
    hard = fn(EvalPred((logits,), np.array(REFS)))
    soft = fn(EvalPred(logits, np.eye(4)[REFS] * 0.9 + 0.025))
    assert hard == soft
    assert hard["accuracy"] == pytest.approx(0.4)
    assert "recall_surprise" not in hard and hard["recall_sadness"] == 0.0
    assert all(isinstance(v, float) for v in scalar_metrics(fer_metrics(PREDS, REFS, 4)).values())
