"""experiments/levers_figure.py: validation accuracy against CPU hours, from the recorded runs only."""

import json
from pathlib import Path

from tests.experiments import load_experiment

ROOT = Path(__file__).resolve().parents[1]


def load_levers_figure():
    return load_experiment("levers_figure")


def test_fine_tuning_trials_carry_their_maes_cost_and_teachers_their_measured_curve(tmp_path):
    levers = load_levers_figure()
    search = {
        "trials": [
            {"trial": "mae", "about": "MAE", "minutes": 30.0, "accuracy": None},
            {"trial": "ft", "about": "from mae", "minutes": 15.0, "threads": 1, "accuracy": 0.6, "init": "mae"},
            {
                "trial": "t",
                "about": "teacher",
                "script": "python -m modeling.training.teacher",
                "minutes": 99.0,
                "accuracy": 0.8,
                "cpu_hours": 2.0,
                "val_accuracy_per_eval": [[1, 1, 0.5], [2, 2, 0.8]],
            },
        ]
    }
    ft, teacher = levers.search_points(search)
    assert ft["name"] == "ft" and ft["points"] == [[30 * 2 / 60 + 15 * 1 / 60, 0.6]]  # MAE on 2 threads, then 1
    assert teacher["name"].startswith("t (CNN teacher") and teacher["points"] == [[1.0, 0.5], [2.0, 0.8]]


def test_the_figure_is_drawn_from_the_committed_results(tmp_path):
    report = load_levers_figure().main(["--output_dir", str(tmp_path)])
    names = [s["name"] for s in report["series"]]
    assert "MAE + fine-tuning" in names and "ft10_reg_sqrt_votes" in names
    recorded = json.loads((ROOT / "results" / "default_model_recipe" / "recipe_time.json").read_text())["attempts"]
    hours = {s: sum(a["cpu_s"] for a in recorded if a["stage"] == s) / 3600 for s in ("mae", "finetune", "teacher")}
    recipe = next(s for s in report["series"] if s["name"] == "MAE + fine-tuning")
    assert len(recipe["points"]) == 40 and abs(recipe["points"][-1][0] - hours["mae"] - hours["finetune"]) < 1e-9
    # the distillation stage starts after the fine-tuning and the teacher, and ends at the recipe's recorded hours
    kd = next(s for s in report["series"] if s["name"].startswith("+ distillation"))
    assert kd["points"][0][0] > sum(hours.values())
    distil = sum(a["cpu_s"] for a in recorded if a["stage"] == "distil") / 3600
    assert abs(kd["points"][-1][0] - sum(hours.values()) - distil) < 1e-9
    # the 72 px stage follows the distillation and ends at the recipe's recorded hours
    hires = next(s for s in report["series"] if s["name"].startswith("+ 72 px"))
    assert hires["points"][0][0] > kd["points"][-1][0]
    assert abs(hires["points"][-1][0] - sum(a["cpu_s"] for a in recorded) / 3600) < 1e-9
    assert json.loads((tmp_path / "ferplus_levers.json").read_text())["series"] == report["series"]
    assert (tmp_path / "ferplus_levers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
