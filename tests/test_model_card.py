import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard
from transformers import HfArgumentParser

from modeling.hub.model_card import TEMPLATE_PATH, training_length, write_model_card
from modeling.labels import FERPLUS_LABELS
from tests.tiny_classifier import save_tiny_classifier

ROOT = Path(__file__).resolve().parents[1]

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
    usage = "fer-predict photo.jpg photos/ clip.mp4 --annotate annotated/ --output faces.jsonl"
    assert f"{usage} --model someone/fer-vit-tiny-ferplus\n" in text
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


def test_extra_sections_render_in_order_between_the_evaluation_and_intended_use(tmp_path):
    save_tiny_classifier(tmp_path)
    sections = {
        "Compared with others": "| model | accuracy |\n| --- | --- |\n| peer | 0.6710 |\n",
        "Limits": "- few faces",
    }
    text = write_model_card(tmp_path, ALL_RESULTS, dataset_name="ferplus", sections=sections).read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    start = headings.index("## Evaluation")
    assert headings[start + 1 : start + 4] == ["## Compared with others", "## Limits", "## Intended use"]
    assert "## Limits\n\n- few faces\n\n## Intended use" in text
    assert "| peer | 0.6710 |" in text and all(all(row) for row in table_cells(text))

    plain = write_model_card(tmp_path, ALL_RESULTS, dataset_name="ferplus").read_text()
    plain_headings = [line for line in plain.splitlines() if line.startswith("## ")]
    assert plain_headings == [h for h in headings if h not in ("## Compared with others", "## Limits")]


def test_the_snippet_of_a_model_trained_on_gray_faces_converts_the_image_to_gray_and_then_classifies_it(
    tmp_path, monkeypatch, capsys
):
    from PIL import Image
    from transformers import AutoConfig

    model_dir = save_tiny_classifier(tmp_path / "gray")
    plain = write_model_card(model_dir, ALL_RESULTS, dataset_name="ferplus").read_text()
    assert '.convert("L")' not in plain and 'print(classifier("face.jpg", top_k=8))' in plain
    config = AutoConfig.from_pretrained(model_dir)
    config.grayscale_input = True
    config.save_pretrained(model_dir)
    text = write_model_card(model_dir, ALL_RESULTS, dataset_name="ferplus").read_text()
    snippet = text.split("```python\n")[1].split("```")[0]
    assert 'face = Image.open("face.jpg").convert("L").convert("RGB")' in snippet
    assert (
        "grayscale_input: true" in text
        and "fer-predict` and `modeling.inference.predictor.FERPredictor` read the flag" in text
    )

    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save("face.jpg")
    exec(snippet, {})  # the snippet as a user runs it, beside a colour face.jpg
    printed = capsys.readouterr().out
    assert all(f"'label': '{name}'" in printed for name in FERPLUS_LABELS)


def test_the_template_is_a_file_in_model_cards():
    assert TEMPLATE_PATH.name == "TEMPLATE.md" and TEMPLATE_PATH.parent.name == "model_cards"
    assert "{{ card_data }}" in TEMPLATE_PATH.read_text()


def test_a_card_without_labels_is_refused(tmp_path):
    with pytest.raises(ValueError, match="No labels"):
        write_model_card(tmp_path, ALL_RESULTS, dataset_name="ferplus")


# --- what ran, no blank cells, a usage snippet that works as written ---

SNIPPET_MODEL = re.compile(r'pipeline\("image-classification", model="([^"]+)"\)')


def table_cells(text: str) -> list[list[str]]:
    """The cells of every Markdown table row of ``text`` (lines starting with ``|``)."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")
    ]


def import_run_finetune():
    sys.path.insert(0, str(ROOT))
    try:
        import run_finetune

        return run_finetune
    finally:
        sys.path.remove(str(ROOT))


def test_training_length_states_optimizer_steps_and_the_fractional_epochs_completed():
    assert training_length(60, 2.4, 16) == "60 steps (2.4 epochs) of total batch 16"
    assert training_length(60, 2.4000000000000004, 16) == "60 steps (2.4 epochs) of total batch 16"
    assert training_length(1, 1.0) == "1 step (1 epoch)"
    assert training_length(7, 0.3333333) == "7 steps (0.33 epochs)"
    assert training_length(12, None, 8) == "12 steps of total batch 8"


def test_the_recipe_row_of_a_max_steps_run_reports_the_trainer_state_not_num_train_epochs(tmp_path):
    from transformers.trainer_callback import TrainerState

    run_finetune = import_run_finetune()
    parser = HfArgumentParser(
        (run_finetune.ModelArguments, run_finetune.DataTrainingArguments, run_finetune.FinetuneTrainingArguments)
    )
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(
        ["--data_dir", str(tmp_path), "--output_dir", str(tmp_path), "--num_train_epochs", "8", "--max_steps", "60"]
        + ["--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "2", "--use_cpu", "true"]
    )
    state = TrainerState(global_step=60, epoch=2.4, max_steps=60, num_train_epochs=3)
    row = run_finetune._recipe_summary(model_args, data_args, training_args, state, 16)["Fine-tuning"]
    assert row.startswith("60 steps (2.4 epochs) of total batch 16, lr ")
    assert "8 epoch" not in row


def test_no_rendered_table_row_has_an_empty_cell_when_counts_and_metrics_are_missing(tmp_path):
    save_tiny_classifier(tmp_path)
    results = {k: v for k, v in ALL_RESULTS.items() if k not in ("eval_samples", "test_macro_f1")}
    report = {k: v for k, v in RAFDB_REPORT.items() if k not in ("num_examples", "balanced_accuracy")}
    text = write_model_card(
        tmp_path, results, dataset_name="ferplus", details={"note": ""}, extra_evaluations=[report]
    ).read_text()
    rows = table_cells(text)
    assert len(rows) > 20
    assert all(all(row) for row in rows), [row for row in rows if not all(row)]
    assert "| FER+ | validation | n/a | 0.8912 | 0.7321 | 0.7012 |" in text
    assert "| RAF-DB | test | n/a | 0.6021 | n/a | 0.5233 |" in text
    assert "| note | n/a |" in text


def test_de_duplicated_test_metrics_get_their_own_rows_with_the_count_left_out_and_no_empty_cell(tmp_path):
    save_tiny_classifier(tmp_path)
    results = {**ALL_RESULTS, "test_dedup_accuracy": 0.8712, "test_dedup_macro_f1": 0.6801, "test_dedup_samples": 2883}
    report = {**RAFDB_REPORT, "dedup_accuracy": 0.5987, "dedup_balanced_accuracy": 0.5466, "dedup_samples": 3050}
    text = write_model_card(
        tmp_path, results, dataset_name="ferplus", dataset_config="majority", extra_evaluations=[report]
    ).read_text()
    assert "Without cross-split duplicates" in text
    assert "| FER+ (majority) | test | 2883 of 3137 | 254 | 0.8712 | n/a | 0.6801 |" in text
    assert "| RAF-DB | test | 3050 of 3068 | 18 | 0.5987 | 0.5466 | n/a |" in text
    assert "| FER+ (majority) | validation | 3191 | 0.8912 |" in text  # the all-examples table is unchanged
    assert all(all(row) for row in table_cells(text))
    # the model index keeps the metrics on every example
    results = ModelCard.load(tmp_path / "README.md").data.eval_results
    got = {(r.dataset_type, r.dataset_split, r.metric_type): r.metric_value for r in results}
    assert got[("ferplus", "test", "accuracy")] == 0.8843 and got[("rafdb", "test", "accuracy")] == 0.6021

    no_dedup = write_model_card(tmp_path, ALL_RESULTS, dataset_name="ferplus").read_text()
    assert "Without cross-split duplicates" not in no_dedup and "left out (copies)" not in no_dedup


def test_without_a_hub_id_the_usage_snippet_loads_the_local_folder_and_says_how_to_push(tmp_path):
    from PIL import Image
    from transformers import pipeline

    model_dir = save_tiny_classifier(tmp_path / "fer-vit-tiny")
    text = write_model_card(model_dir, ALL_RESULTS, dataset_name="ferplus").read_text()
    assert "fer-mae-vit" not in text  # the old default name, which no Hub repository holds
    (model_arg,) = SNIPPET_MODEL.findall(text)
    assert Path(model_arg) == model_dir
    assert f"python -m modeling.hub.push {model_arg} user/name" in text
    assert "works in place of the folder" in text
    assert f"fer-predict crops/ --no_detect --model {model_arg}" in text
    assert ModelCard.load(model_dir / "README.md").data.to_dict()["model-index"][0]["name"] == "fer-vit-tiny"

    classify = pipeline("image-classification", model=model_arg, device="cpu")
    face = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8))
    assert {p["label"] for p in classify(face, top_k=8)} == set(FERPLUS_LABELS)


def test_with_a_hub_id_the_snippet_loads_it_and_the_push_command_names_the_folder(card_path):
    text = card_path.read_text()
    assert SNIPPET_MODEL.findall(text) == ["someone/fer-vit-tiny-ferplus"]
    assert f"python -m modeling.hub.push {card_path.parent} someone/fer-vit-tiny-ferplus" in text


def test_a_folder_below_the_working_directory_is_named_relative_to_it(tmp_path, monkeypatch):
    save_tiny_classifier(tmp_path / "outputs" / "run")
    monkeypatch.chdir(tmp_path)
    text = write_model_card(tmp_path / "outputs" / "run", ALL_RESULTS, dataset_name="ferplus").read_text()
    assert SNIPPET_MODEL.findall(text) == ["outputs/run"]
    assert str(tmp_path) not in text


def test_a_max_steps_run_of_run_finetune_writes_a_card_with_what_ran_every_count_and_a_loadable_snippet(
    ferplus_mini_dir, tmp_path
):
    from PIL import Image
    from transformers import pipeline

    from tests.test_run_finetune import finetune_args, run_finetune_main

    out = tmp_path / "ft"
    tiny = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"
    argv = finetune_args(
        None, ferplus_mini_dir, out, tmp_path / "cache",
        model_size="tiny", image_size=32, patch_size=8, config_overrides=tiny, weighted_sampler="none",
        num_train_epochs=8, max_steps=6, max_train_samples=64, max_eval_samples=24, max_predict_samples=20,
        eval_strategy="no", save_strategy="no", load_best_model_at_end=False, warmup_epochs=0,
    )  # fmt: skip
    run_finetune_main(argv)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and state["epoch"] == pytest.approx(1.5)  # 64 images, 4 batches of 16 an epoch

    text = (out / "README.md").read_text()
    assert "6 steps (1.5 epochs) of total batch 16" in text and "8 epoch" not in text
    assert "| FER+ | validation | 24 |" in text and "| FER+ | test | 20 |" in text
    assert "| FER+ | test | 20 of 20 | 0 |" in text  # de-duplicated: mini/ test has no copies in train/validation
    assert all(all(row) for row in table_cells(text))
    (model_arg,) = SNIPPET_MODEL.findall(text)
    classify = pipeline("image-classification", model=model_arg, device="cpu")
    face = Image.open(next((ferplus_mini_dir / "FER2013Test").glob("*.png")))
    assert {p["label"] for p in classify(face, top_k=8)} == set(FERPLUS_LABELS)


def test_a_card_written_beside_no_weights_names_a_marked_placeholder_not_its_folder(tmp_path):
    config = json.loads(save_tiny_classifier(tmp_path / "model").joinpath("config.json").read_text())
    card_dir = tmp_path / "card-only"
    card_dir.mkdir()
    text = write_model_card(card_dir, ALL_RESULTS, config=config, dataset_name="ferplus").read_text()
    assert SNIPPET_MODEL.findall(text) == ["path/to/model/folder"]
    assert str(card_dir) not in text and "# card-only" in text
