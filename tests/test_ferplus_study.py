"""The FER+ study driver keeps working: a seconds-long run on mini/ with two arms."""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_study_driver_runs_pretraining_then_arms_and_writes_the_table(ferplus_mini_dir, tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import ferplus_study
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    report = ferplus_study.main(["--tiny", "--work_dir", str(tmp_path), "--seeds", "0", "--arms", "A_scratch,B_mae"])
    saved = json.loads((tmp_path / "ferplus_study.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert [r["arm"] for r in saved["runs"]] == ["A_scratch", "B_mae"]
    for row in saved["runs"]:
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["train_minutes"] > 0
        # The audit trail of the selection: validation after each evaluation, the selected step, last or not.
        steps = [step for step, _, _ in row["val_accuracy_per_eval"]]
        assert steps == [1, 2] and row["selected_step"] in steps
        assert row["selected_is_last"] == (row["selected_step"] == 2)
        assert row["precision"].startswith(("bf16 autocast on CPU", "float32 on CPU"))
    table = (tmp_path / "ferplus_study.md").read_text()
    assert "majority-class baseline | - | 34.52" in table
    assert len(re.findall(r"\| [\d.]+ of [\d.]+ \|", table)) == 2  # the selected epoch of each run
    # A second call finds every run finished and only collects.
    again = ferplus_study.main(["--tiny", "--work_dir", str(tmp_path), "--seeds", "0", "--arms", "A_scratch,B_mae"])
    assert again["runs"] == report["runs"]


def test_gpu_variant_flags_parse_with_every_study_recipe():
    """``--gpu`` appends flags to the study's recipes; each combination must parse with its script (bf16 is
    switched back off here only because TrainingArguments refuses it without a GPU)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import ferplus_study
        from test_recipes import parser_for

        from modeling.training.recipes import parse_script_args
    finally:
        sys.path.remove(str(ROOT / "experiments"))
        sys.path.remove(str(ROOT / "tests"))
    recipes = sorted((ROOT / "configs").glob("study_ferplus_*.json"))
    assert len(recipes) == 6
    for path in recipes:
        flags = ferplus_study.GPU_MAE if path.name == "study_ferplus_mae.json" else ferplus_study.GPU_FINETUNE
        model_args, data_args, training_args = parse_script_args(
            parser_for(path), [str(path), *flags, "--bf16", "false"]
        )
        assert (model_args.model_size, model_args.image_size, model_args.patch_size) == ("small", 112, 16)
        assert not training_args.use_cpu and data_args.data_dir
        assert not model_args.config_overrides  # the CPU study's 6-layer cut is undone
