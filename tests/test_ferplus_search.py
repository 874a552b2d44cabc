"""The issue-14 search driver: trials run through the package's scripts, on validation only, and are recorded."""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_search_runs_an_mae_trial_then_a_fine_tuning_trial_from_it_and_never_scores_the_test_split(
    ferplus_mini_dir, tmp_path, monkeypatch
):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import ferplus_search
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    trials = {
        "mae_tiny": {"recipe": ferplus_search.MAE, "about": "MAE", "flags": ["--patch_size", "8"]},
        "ft_tiny": {"recipe": ferplus_search.FINETUNE, "about": "from the MAE", "flags": [], "init": "mae_tiny"},
        "ft_votes": {
            "recipe": ferplus_search.FINETUNE,
            "about": "on the votes",
            "flags": ferplus_search.VOTES,
            "init": "mae_tiny",
        },
        "teacher_tiny": {"recipe": ferplus_search.TEACHER, "about": "a teacher", "flags": ["--epochs", "3"]},
        "ft_kd": {
            "recipe": ferplus_search.FINETUNE,
            "about": "distilled",
            "flags": [*ferplus_search.VOTES, "--distillation_alpha", "0.5"],
            "init": "mae_tiny",
            "teacher": "teacher_tiny",
        },
    }
    monkeypatch.setattr(ferplus_search, "TRIALS", trials)
    # The MAE first on both cores, then the two fine-tuning trials side by side (they start from it).
    report = ferplus_search.main(["--tiny", "--work_dir", str(tmp_path), "--parallel", "2"])
    mae, ft, votes, teacher, kd = report["trials"]
    # The teacher ran before the fine-tuning trials (its own script, 1 epoch with --tiny) and taught ft_kd.
    assert teacher["script"] == "python -m modeling.training.teacher" and 0 <= teacher["accuracy"] <= 1
    assert [e for _, e, _ in teacher["val_accuracy_per_eval"]] == [1] and teacher["selected_is_last"]
    assert kd["teacher"] == "teacher_tiny" and 0 <= kd["accuracy"] <= 1
    assert "Distillation" in (tmp_path / "ft_kd" / "README.md").read_text()
    assert "threads" not in mae or mae["threads"] >= ft["threads"]
    assert ft["threads"] == votes["threads"] == max(1, (os.cpu_count() or 2) // 2)
    assert (
        votes["accuracy"] is not None and "| ft_votes | on the votes |" in (tmp_path / "ferplus_search.md").read_text()
    )
    assert mae["script"] == "run_mae.py" and mae["eval_loss"] > 0
    assert ft["script"] == "run_finetune.py" and ft["init"] == "mae_tiny" and 0 <= ft["accuracy"] <= 1
    assert [step for step, _, _ in ft["val_accuracy_per_eval"]] == [1, 2]
    assert len(ft["val_balanced_accuracy_per_eval"]) == len(ft["val_macro_f1_per_eval"]) == 2
    assert all(0 <= v <= 1 for v in ft["val_balanced_accuracy_per_eval"] + ft["val_macro_f1_per_eval"])
    saved = json.loads((tmp_path / "ft_tiny" / "all_results.json").read_text())
    assert not any(k.startswith("test_") for k in saved)  # the search never looks at the test split
    table = (tmp_path / "ferplus_search.md").read_text()
    assert "| mae_tiny | MAE |" in table and "| ft_tiny | from the MAE |" in table
    # A second call finds both trials finished, runs nothing and keeps the records.
    assert ferplus_search.main(["--tiny", "--work_dir", str(tmp_path)])["trials"] == report["trials"]


def test_every_search_trial_parses_with_its_script():
    sys.path.insert(0, str(ROOT / "experiments"))
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import ferplus_search
        from test_recipes import parser_for

        from modeling.training.recipes import parse_script_args
    finally:
        sys.path.remove(str(ROOT / "experiments"))
        sys.path.remove(str(ROOT / "tests"))
    from modeling.training.teacher import parse_args as teacher_args

    for name, trial in ferplus_search.TRIALS.items():
        if trial["recipe"] == ferplus_search.TEACHER:
            assert teacher_args(["--data_dir", "d", "--output_dir", "o", *trial["flags"]]).epochs > 0, name
            continue
        path = ROOT / trial["recipe"]
        model_args, data_args, training_args = parse_script_args(parser_for(path), [str(path), *trial["flags"]])
        assert data_args.data_dir, name
        if path.name == "search_ferplus_finetune.json":
            assert not training_args.do_predict, f"{name} would score the test split"
