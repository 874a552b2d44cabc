"""python -m modeling.hub.recreate: the shipped model's one-command recipe, its stages, resume and time accounting."""

import json
import subprocess
import sys
import time

import pytest

from modeling.cli import UserError
from modeling.hub import recreate


def test_tree_cpu_seconds_counts_a_busy_child_and_its_own_children():
    # A child that spins one grandchild for ~0.6 s of CPU, then spins itself: both are in the tree's count.
    code = (
        "import subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time\\nt=time.process_time()\\n"
        "while time.process_time() - t < 0.6: pass\\ntime.sleep(30)'])\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.6: pass\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 20
        seconds = 0.0
        while time.time() < deadline and seconds < 1.1:
            time.sleep(0.2)
            seconds = recreate.tree_cpu_seconds(proc.pid)
        assert seconds >= 1.1  # the child's 0.6 s and the live grandchild's 0.6 s
        assert recreate.tree_cpu_seconds(2**22 + 12345) == 0.0  # no such process: nothing counted
    finally:
        subprocess.run(["pkill", "-P", str(proc.pid)], check=False)
        proc.kill()
        proc.wait()


def test_recreate_runs_every_stage_once_records_their_time_and_skips_them_when_done(ferplus_mini_dir, tmp_path):
    work = tmp_path / "work"
    summary = recreate.main(["--data_dir", str(ferplus_mini_dir), "--work_dir", str(work), "--tiny", "--no_ship"])
    assert [a["stage"] for a in summary["attempts"]] == ["mae", "finetune", "teacher", "distil", "hires"]
    assert all(a["exit"] == 0 and a["wall_s"] > 0 for a in summary["attempts"])
    assert summary["cpu_hours"] > 0 and summary["wall_hours"] > 0
    mae = json.loads((work / "mae" / "all_results.json").read_text())
    assert "train_runtime" in mae
    ft = json.loads((work / "finetune" / "all_results.json").read_text())
    assert "eval_accuracy" in ft and not any(k.startswith("test_") for k in ft)  # the test split is the last stage's
    assert (work / "teacher" / "teacher.safetensors").is_file()
    kd = json.loads((work / "distil" / "all_results.json").read_text())
    assert "eval_accuracy" in kd and not any(k.startswith("test_") for k in kd)
    hires = json.loads((work / "hires" / "all_results.json").read_text())
    assert 0 <= hires["test_accuracy"] <= 1 and "eval_accuracy" in hires  # selected on validation, test scored once
    before = json.loads((work / "distil" / "config.json").read_text())
    config = json.loads((work / "hires" / "config.json").read_text())
    assert config["hidden_size"] == 32 and config["architectures"] == ["ViTForImageClassification"]  # a plain ViT
    assert (before["image_size"], config["image_size"]) == (48, 72) and config["patch_size"] == before["patch_size"]
    assert json.loads((work / "hires" / "preprocessor_config.json").read_text())["size"] == {"height": 72, "width": 72}
    for stage in ("distil", "hires"):  # the teacher is a training aid, not part of the model
        assert not list((work / stage).glob("teacher*"))
    again = recreate.main(["--data_dir", str(ferplus_mini_dir), "--work_dir", str(work), "--tiny", "--no_ship"])
    assert again["attempts"] == summary["attempts"]  # nothing ran again


def test_recreate_refuses_a_folder_without_the_fer_plus_layout(tmp_path):
    with pytest.raises(UserError, match="no FER2013Train/ folder"):
        recreate.main(["--data_dir", str(tmp_path), "--no_ship"])


def test_the_cards_recipe_line_states_the_epochs_and_labels_the_configs_set():
    mae = json.loads((recreate.ROOT / recreate.MAE_RECIPE).read_text())
    ft = json.loads((recreate.ROOT / recreate.FINETUNE_RECIPE).read_text())
    line = recreate.recipe_summary()
    assert f"labels unused ({mae['num_train_epochs']} epochs, `{recreate.MAE_RECIPE}`)" in line
    assert f"'{ft['dataset_config_name']}' protocol" in line and f"({ft['num_train_epochs']} epochs," in line
    kd = json.loads((recreate.ROOT / recreate.DISTIL_RECIPE).read_text())
    assert f"{kd['num_train_epochs']} more epochs with soft (alpha {kd['distillation_alpha']}" in line
    hires = json.loads((recreate.ROOT / recreate.HIRES_RECIPE).read_text())
    assert f"then {hires['num_train_epochs']} epochs more at {hires['image_size']} px" in line
    assert "python -m modeling.hub.recreate --data_dir DATA" in line
