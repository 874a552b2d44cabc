"""run_finetune.py end to end through main(): MAE on FER+ mini/, then fine-tuning from its output."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from modeling.labels import FERPLUS_LABELS
from tests.test_run_mae import mae_args, run_mae_main
from tests.tiny import to_argv

ROOT = Path(__file__).resolve().parents[1]


def finetune_args(model, data_dir, out, cache, **extra):
    args = {
        "dataset_name": "ferplus",
        "data_dir": str(data_dir),
        "cache_dir": str(cache),
        "augmentation": "regular",
        "weighted_sampler": "sqrt",
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 16,
        "num_train_epochs": 2,
        "warmup_epochs": 0.5,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "load_best_model_at_end": True,
        "logging_steps": 2,
        "do_train": True,
        "do_eval": True,
        "do_predict": True,
        "use_cpu": True,
        "report_to": "none",
        "dataloader_num_workers": 0,
        "output_dir": str(out),
        "seed": 0,
    }
    if model is not None:
        args["model_name_or_path"] = str(model)
    args.update(extra)
    return to_argv(args)


def import_run_finetune():
    sys.path.insert(0, str(ROOT))
    try:
        import run_finetune

        return run_finetune
    finally:
        sys.path.remove(str(ROOT))


def run_finetune_main(argv):
    return import_run_finetune().main(argv)


@pytest.fixture(scope="module")
def pretrained(ferplus_mini_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mae")
    run_mae_main(mae_args(ferplus_mini_dir, tmp / "mae", tmp / "cache", do_eval=False, max_steps=2))
    return tmp / "mae"


def test_finetune_from_mae_trains_evaluates_predicts_and_saves_a_pipeline_ready_model(
    pretrained, ferplus_mini_dir, tmp_path
):
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    out = tmp_path / "ft"
    run_finetune_main(finetune_args(pretrained, ferplus_mini_dir, out, tmp_path / "cache"))
    saved = json.loads((out / "all_results.json").read_text())
    for key in ("eval_accuracy", "test_accuracy", "test_balanced_accuracy", "test_macro_f1", "eval_balanced_accuracy"):
        assert key in saved, key
    assert saved["test_samples"] == 40 and saved["test_split"] == "test"

    model, info = AutoModelForImageClassification.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert [model.config.id2label[i] for i in range(8)] == list(FERPLUS_LABELS)
    assert not hasattr(model.config, "mask_ratio")
    assert model.config.grayscale_input is True  # FER+ faces are gray: FERPredictor converts colour crops to gray

    face = next((ferplus_mini_dir / "FER2013Test").glob("*.png"))
    classify = pipeline("image-classification", model=str(out), device="cpu")
    preds = classify(Image.open(face), top_k=8)
    assert {p["label"] for p in preds} == set(FERPLUS_LABELS)

    rows = (out / "test_predictions.csv").read_text().splitlines()
    assert rows[0].startswith("index,label,prediction,p_neutral") and len(rows) == 41
    cm = np.array(json.loads((out / "test_confusion_matrix.json").read_text()))
    assert cm.sum() == 40 and np.trace(cm) / 40 == pytest.approx(saved["test_accuracy"])
    assert (out / "confusion_matrix_test.png").is_file()
    card = (out / "README.md").read_text()
    assert "model-index" in card and "pretrained as a masked autoencoder" in card
    assert set(saved["test_per_class_recall"]) <= set(FERPLUS_LABELS)

    # de-duplicated test metrics: the faces without an exact pixel copy in train or validation, from the CSV
    from modeling.data import find_duplicate_mask, load_fer_dataset

    duplicate = find_duplicate_mask(
        load_fer_dataset("ferplus", ferplus_mini_dir, cache_dir=tmp_path / "cache"), "test"
    )
    right = np.array([row.split(",")[1] == row.split(",")[2] for row in rows[1:]])
    assert saved["test_dedup_samples"] == (~duplicate).sum() == 40  # mini/ test has no copies of train/validation
    assert saved["test_dedup_accuracy"] == pytest.approx(right[~duplicate].mean()) == saved["test_accuracy"]
    assert saved["test_dedup_macro_f1"] == pytest.approx(saved["test_macro_f1"])
    assert "| FER+ | test | 40 of 40 | 0 |" in card


def test_finetune_with_lora_and_mae_recipe_saves_a_merged_plain_checkpoint(pretrained, ferplus_mini_dir, tmp_path):
    from transformers import AutoModelForImageClassification

    out = tmp_path / "lora"
    run_finetune_main(
        finetune_args(
            pretrained, ferplus_mini_dir, out, tmp_path / "cache",
            augmentation="mae", lora_r=4, num_train_epochs=1, tta_flip=True, weighted_sampler="none",
        )
    )  # fmt: skip
    model, info = AutoModelForImageClassification.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not any("lora" in k for k in model.state_dict())
    assert "test_accuracy" in json.loads((out / "all_results.json").read_text())


class FixedTrainer:
    """What predict() needs of a Trainer, answering fixed logits."""

    def __init__(self, logits: np.ndarray):
        self.logits, self.saved = logits, {}

    def predict(self, dataset, metric_key_prefix: str):
        return SimpleNamespace(predictions=self.logits)

    def log_metrics(self, split, metrics):
        pass

    def save_metrics(self, split, metrics):
        self.saved[split] = metrics

    def is_world_process_zero(self):
        return True


def test_predict_adds_metrics_on_the_test_faces_without_a_pixel_copy_matching_the_predictions_csv(tmp_path):
    import datasets

    from modeling.evaluation.metrics import fer_metrics

    run_finetune = import_run_finetune()
    names = ["a", "b", "c"]
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    preds = np.array([0, 1, 2, 1, 1, 0, 0, 2])  # wrong on rows 3, 5 (planted copies) and 7
    test_set = datasets.Dataset.from_dict(
        {"label": labels}, features=datasets.Features({"label": datasets.ClassLabel(names=names)})
    )
    duplicate = np.zeros(10, dtype=bool)  # over the full split: test_set is its first 8 rows
    duplicate[[3, 5, 9]] = True
    trainer = FixedTrainer(np.eye(3, dtype=np.float32)[preds] * 5)
    args = (
        trainer,
        test_set,
        lambda tf, flip=False: None,
        None,
        names,
        False,
        "test",
        SimpleNamespace(output_dir=tmp_path),
    )

    metrics = run_finetune.predict(*args, duplicate)
    assert trainer.saved["test"] is metrics
    assert metrics["test_accuracy"] == pytest.approx(5 / 8)
    assert metrics["test_dedup_samples"] == 6 and metrics["test_dedup_accuracy"] == pytest.approx(5 / 6)
    rows = [r.split(",") for r in (tmp_path / "test_predictions.csv").read_text().splitlines()[1:]]
    right = np.array([r[1] == r[2] for r in rows])
    assert metrics["test_dedup_accuracy"] == pytest.approx(right[~duplicate[:8]].mean())
    kept = fer_metrics(preds[~duplicate[:8]], labels[~duplicate[:8]], 3)
    assert metrics["test_dedup_balanced_accuracy"] == pytest.approx(kept["balanced_accuracy"])
    assert metrics["test_dedup_macro_f1"] == pytest.approx(kept["macro_f1"])

    assert not any("dedup" in k for k in run_finetune.predict(*args))  # no mask (dataset too large): no keys


def test_rafdb_style_dataset_without_validation_gets_a_stratified_carved_validation_split():
    import datasets

    from modeling.training.finetuning import select_splits

    labels = [0] * 60 + [1] * 30 + [2] * 10
    feats = datasets.Features({"label": datasets.ClassLabel(names=["a", "b", "c"])})
    dd = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"label": labels}, features=feats),
        test=datasets.Dataset.from_dict({"label": [0, 1, 2]}, features=feats),
    )
    train, val, test, name = select_splits(dd, 0.1, seed=0)
    assert name == "test" and len(test) == 3
    assert sorted(val["label"]) == [0] * 6 + [1] * 3 + [2]  # stratified
    assert len(train) == 90
    again = select_splits(dd, 0.1, seed=0)[1]
    assert again["label"] == val["label"]


def test_affectnet_style_validation_split_becomes_the_test_set():
    import datasets

    from modeling.training.finetuning import select_splits

    feats = datasets.Features({"label": datasets.ClassLabel(names=["a", "b"])})
    dd = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"label": [0, 1] * 20}, features=feats),
        validation=datasets.Dataset.from_dict({"label": [0, 1]}, features=feats),
    )
    train, val, test, name = select_splits(dd, 0.25, seed=1)
    assert name == "validation" and len(test) == 2 and len(val) == 10 and len(train) == 30


def test_uint8_batches_normalised_in_the_trainer_train_exactly_as_batches_normalised_in_the_loader(
    pretrained, ferplus_mini_dir, tmp_path, monkeypatch
):
    """--normalize_on_device (the default on an accelerator) moves only where the arithmetic runs: on CPU both
    paths give bit-identical losses and predictions, erasing boxes included."""
    from modeling.training.pixels import NormalizeOnDevice

    seen, prepare = [], NormalizeOnDevice._prepare_inputs

    def recording(self, inputs):
        seen.append(inputs["pixel_values"].dtype)
        return prepare(self, inputs)

    monkeypatch.setattr(NormalizeOnDevice, "_prepare_inputs", recording)
    results, dtypes = {}, {}
    for on_device in (False, True):
        seen.clear()
        out = tmp_path / f"on_device_{on_device}"
        run_finetune_main(
            finetune_args(
                pretrained, ferplus_mini_dir, out, tmp_path / "cache", max_steps=3, eval_strategy="no",
                save_strategy="no", load_best_model_at_end=False, augmentation_knobs='{"erasing_p": 1.0}',
                normalize_on_device=on_device,
            )
        )  # fmt: skip
        results[on_device] = json.loads((out / "all_results.json").read_text())
        dtypes[on_device] = set(seen)
    assert dtypes == {False: {torch.float32}, True: {torch.uint8}}  # train, eval and predict batches alike
    for key in ("train_loss", "eval_loss", "eval_accuracy", "test_accuracy", "test_macro_f1"):
        assert results[True][key] == results[False][key], key


def test_trains_on_fer_plus_vote_distributions_while_selecting_and_scoring_on_the_majority_protocol(
    pretrained, ferplus_mini_dir, tmp_path
):
    from modeling.data import load_fer_dataset

    cache = tmp_path / "cache"
    prob = load_fer_dataset("ferplus", ferplus_mini_dir, config="probability", cache_dir=cache)
    major = load_fer_dataset("ferplus", ferplus_mini_dir, config="majority", cache_dir=cache)
    assert len(prob["train"]) != len(
        major["train"]
    )  # the protocols keep different faces: the test can tell them apart
    out = tmp_path / "ft"
    run_finetune_main(
        finetune_args(
            pretrained,
            ferplus_mini_dir,
            out,
            cache,
            dataset_config_name="probability",
            eval_dataset_config_name="majority",
            max_steps=2,
            num_train_epochs=1,
        )  # fmt: skip
    )
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["train_samples"] == len(prob["train"])
    assert saved["eval_samples"] == len(major["validation"]) and saved["test_samples"] == len(major["test"])
    card = (out / "README.md").read_text()
    assert "the 'probability' protocol, selected and scored on 'majority'" in card
    assert "ferplus" in card and "majority" in card


def test_distilling_from_a_teacher_trains_a_plain_vit_and_refuses_a_teacher_of_other_classes(
    pretrained, ferplus_mini_dir, tmp_path, monkeypatch
):
    from transformers import ViTForImageClassification

    from modeling.cli import UsageError
    from modeling.models.teacher import FaceResNet, save_teacher
    from modeling.training import trainer as trainer_module

    torch.manual_seed(0)
    save_teacher(FaceResNet(len(FERPLUS_LABELS)), tmp_path / "teacher", FERPLUS_LABELS, 48)
    calls = []
    real = trainer_module.distillation_loss
    monkeypatch.setattr(trainer_module, "distillation_loss", lambda *a, **k: calls.append(k) or real(*a, **k))
    out = tmp_path / "ft"
    extra = {"dataset_config_name": "probability", "eval_dataset_config_name": "majority", "max_steps": 2}
    extra.update(num_train_epochs=1, teacher_dir=str(tmp_path / "teacher"), distillation_alpha=0.3)
    run_finetune_main(finetune_args(pretrained, ferplus_mini_dir, out, tmp_path / "cache", **extra))
    assert len(calls) == 2 and calls[0]["alpha"] == 0.3 and calls[0]["temperature"] == 1.0  # one per training step
    model = ViTForImageClassification.from_pretrained(out)  # a plain ViT: nothing of the teacher is saved
    assert not any("teacher" in k or k.startswith("net.") for k in model.state_dict())
    assert "Distillation" in (out / "README.md").read_text()

    save_teacher(FaceResNet(3), tmp_path / "other", ["a", "b", "c"], 48)
    extra.update(teacher_dir=str(tmp_path / "other"))
    with pytest.raises(UsageError, match="its classes"):
        run_finetune_main(finetune_args(pretrained, ferplus_mini_dir, tmp_path / "ft2", tmp_path / "cache", **extra))


def test_logit_adjustment_folds_the_validation_chosen_shift_into_the_saved_model(
    pretrained, ferplus_mini_dir, tmp_path
):
    from transformers import AutoModelForImageClassification

    from modeling.data import load_fer_dataset
    from modeling.training.logit_adjustment import log_prior_shift, training_prior
    from modeling.training.sampling import class_weights

    cache = tmp_path / "cache"
    out = tmp_path / "ft"
    run_finetune_main(
        finetune_args(
            pretrained,
            ferplus_mini_dir,
            out,
            cache,
            dataset_config_name="probability",
            eval_dataset_config_name="majority",
            max_steps=2,
            num_train_epochs=1,
            save_strategy="steps",
            save_steps=2,
            eval_strategy="steps",
            eval_steps=2,
            cpu_precision="fp32",
            logit_adjustment=True,
        )  # fmt: skip
    )
    record = json.loads((out / "logit_adjustment.json").read_text())
    train = load_fer_dataset("ferplus", ferplus_mini_dir, config="probability", cache_dir=cache)["train"]
    prior = training_prior(np.asarray(train["soft_label"]), 8, class_weights(np.asarray(train["label"]), "sqrt"))
    assert record["prior"] == pytest.approx(prior, abs=1e-6)  # the sqrt sampler's draws of the vote distributions
    assert record["bias_shift"] == pytest.approx(log_prior_shift(prior, record["tau"]), abs=1e-6)

    adjusted = AutoModelForImageClassification.from_pretrained(out)
    trained = AutoModelForImageClassification.from_pretrained(out / "checkpoint-2")  # before the adjustment
    shift = adjusted.classifier.bias - trained.classifier.bias
    torch.testing.assert_close(shift, torch.tensor(record["bias_shift"], dtype=torch.float32), atol=1e-5, rtol=0)
    assert adjusted.config.logit_adjustment["tau"] == record["tau"]
    torch.testing.assert_close(adjusted.classifier.weight, trained.classifier.weight, atol=0, rtol=0)

    saved = json.loads((out / "all_results.json").read_text())
    chosen = next(row for row in record["grid"] if row["tau"] == record["tau"])
    assert saved["logit_adjustment_tau"] == record["tau"]
    assert saved["eval_accuracy"] == pytest.approx(chosen["accuracy"])  # the validation scored after the shift
    assert saved["eval_balanced_accuracy"] == pytest.approx(chosen["balanced_accuracy"])
    assert "Logit adjustment" in (out / "README.md").read_text()


def test_logit_adjustment_without_training_is_refused_before_anything_heavy(ferplus_mini_dir, tmp_path):
    from modeling.cli import UsageError

    argv = finetune_args(None, ferplus_mini_dir, tmp_path / "ft", tmp_path / "cache", do_train=False)
    with pytest.raises(UsageError, match="--logit_adjustment"):
        run_finetune_main(argv + ["--logit_adjustment", "true"])


def test_attn_implementation_eager_trains_without_the_sdpa_kernel(pretrained, ferplus_mini_dir, tmp_path, monkeypatch):
    """bench/cpu_training.py measured eager attention 1.4x faster than SDPA on a bf16 CPU at 145 tokens."""
    import torch.nn.functional as F

    from modeling.cli import UsageError

    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    extra = {"max_steps": 1, "num_train_epochs": 1, "do_predict": False}
    run_finetune_main(finetune_args(pretrained, ferplus_mini_dir, tmp_path / "sdpa", tmp_path / "cache", **extra))
    assert calls  # transformers' default for ViT
    calls.clear()
    extra["attn_implementation"] = "eager"
    run_finetune_main(finetune_args(pretrained, ferplus_mini_dir, tmp_path / "eager", tmp_path / "cache", **extra))
    assert not calls
    with pytest.raises(UsageError, match="invalid choice: 'flash_attention_9'"):  # refused before anything runs
        run_finetune_main(["--attn_implementation", "flash_attention_9", "--output_dir", str(tmp_path / "x")])
