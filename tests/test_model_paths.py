"""A model named by a local path that is not there stops every command at once, in one line naming it, instead of
being looked up on the Hub (half a minute of retries, then a connection error: issue 28); Hub ids pass untouched."""

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from modeling.cli import MissingFileError, looks_local, model_argument, require_model

ROOT = Path(__file__).resolve().parents[1]
FINETUNE_RECIPE = ROOT / "configs" / "finetune_vit_tiny_ferplus_cpu.json"
HUB_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT")


@pytest.mark.parametrize(
    "name",
    ["outputs/ferplus_tiny", "runs/mae", "./mae", "../mae", "/abs/mae", "~/mae", "outputs/x/checkpoint-5", "mae_tiny",
     "mae.pth", "user/model.onnx", "C:\\runs\\mae"],
)  # fmt: skip
def test_paths_that_cannot_be_hub_ids_are_local(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no outputs/ folder here: the name alone decides
    assert looks_local(name)


def test_a_name_whose_first_folder_exists_here_is_local_and_user_slash_name_is_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not looks_local("user/name") and not looks_local("facebook/vit-mae-base")
    (tmp_path / "user").mkdir()
    assert looks_local("user/name")


def test_require_model_names_the_missing_path_and_why_it_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingFileError) as raised:
        require_model("--model", "outputs/x")
    assert str(raised.value) == (
        "--model outputs/x: no such folder (a local path: outputs/ is where runs write; a Hub id looks like user/name)"
    )
    with pytest.raises(MissingFileError, match=r"^mae\.pth: no such file \(a local file; "):
        require_model("", "mae.pth")


def test_require_model_lets_hub_ids_existing_paths_and_no_model_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "run").mkdir(parents=True)
    for name in ("user/name", "facebook/vit-mae-base", "outputs/run", str(tmp_path / "outputs"), None):
        require_model("--model", name)  # no error


def test_model_argument_takes_the_last_flag_over_the_recipes_key(tmp_path):
    assert model_argument([str(FINETUNE_RECIPE)], "model_name_or_path") == "outputs/mae_tiny"
    argv = [str(FINETUNE_RECIPE), "--model_name_or_path", "a/b", "--model-name-or-path=c/d"]
    assert model_argument(argv, "model_name_or_path") == "c/d"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert model_argument([str(broken)], "model_name_or_path") is None  # left to the script's own parsing
    assert model_argument(["--data_dir", "x"], "model_name_or_path") is None


def _child(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """A command run as a newcomer runs it: not in offline mode. HF_ENDPOINT points at a closed local port, so that a
    regression would fail (slowly, on retries) rather than reach the real Hub."""
    env = {k: v for k, v in os.environ.items() if k not in HUB_VARIABLES}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return proc, time.perf_counter() - start


def _the_one_line(proc: subprocess.CompletedProcess, prog: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Retrying" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert line.startswith(f"{prog}: error: ")
    return line


def test_fer_predict_with_the_readmes_model_path_before_training_fails_at_once(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"")
    proc, seconds = _child(
        ["-m", "modeling.inference.fer_predict", "photo.jpg", "--model", "outputs/ferplus_tiny"], tmp_path
    )
    line = _the_one_line(proc, "fer-predict")
    assert line == (
        "fer-predict: error: --model outputs/ferplus_tiny: no such folder (a local path: outputs/ is where runs write; "
        "a Hub id looks like user/name)"
    )
    assert seconds < 10


@pytest.mark.parametrize("script", ["run_finetune.py", "run_mae.py"])
def test_the_training_scripts_with_a_missing_model_fail_before_loading_torch(script, tmp_path):
    (tmp_path / "data").mkdir()
    if script == "run_finetune.py":  # the recipe's own default: outputs/mae_tiny, not trained yet
        args = [str(ROOT / script), str(FINETUNE_RECIPE), "--data_dir", "data"]
    else:
        args = [str(ROOT / script), "--data_dir", "data", "--model_name_or_path", str(tmp_path / "mae")]
    proc, seconds = _child(args, tmp_path)
    line = _the_one_line(proc, script)
    missing = "outputs/mae_tiny" if script == "run_finetune.py" else str(tmp_path / "mae")
    assert line.startswith(f"{script}: error: --model_name_or_path {missing}: no such folder (")
    assert seconds < 10


def test_run_finetune_and_run_mae_main_check_the_model_too(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT))
    try:
        run_finetune, run_mae = importlib.import_module("run_finetune"), importlib.import_module("run_mae")
    finally:
        sys.path.remove(str(ROOT))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingFileError, match="^--model_name_or_path outputs/mae_tiny: no such folder"):
        run_finetune.main([str(FINETUNE_RECIPE), "--data_dir", str(tmp_path)])
    with pytest.raises(MissingFileError, match="^--model_name_or_path ./mae: no such folder"):
        run_mae.main(["--data_dir", str(tmp_path), "--model_name_or_path", "./mae"])


@pytest.mark.parametrize(
    "module, argv",
    [
        ("modeling.inference.evaluate", ["outputs/x", "--dataset_name", "ferplus"]),
        ("modeling.inference.export", ["outputs/x", "model.onnx"]),
        ("modeling.hub.push", ["outputs/x", "someone/fer"]),
        ("modeling.hub.ship", ["outputs/x"]),
        ("modeling.training.probe", ["outputs/x", "--dataset_name", "ferplus", "--data_dir", "."]),
    ],
    ids=["evaluate", "export", "push", "ship", "probe"],
)
def test_every_modeling_command_taking_a_model_stops_on_a_missing_local_one(module, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(module).main
    with pytest.raises(MissingFileError, match=r"^outputs/x: no such folder \(a local path: outputs/ is where runs"):
        main(argv)
    assert not (tmp_path / "model.onnx").exists()


def test_the_demo_stops_on_a_missing_model_flag_and_its_model_box_says_so(tmp_path, monkeypatch):
    from tests.test_demo import load_demo_app

    demo_app = load_demo_app()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingFileError, match="^--model outputs/x: no such folder"):
        demo_app.main(["--model", "outputs/x"])
    app = demo_app.DemoApp(None)
    _, _, message, _ = app.classify(np.zeros((48, 48, 3), np.uint8), True, "outputs/x")
    assert message.startswith("**The model could not be loaded**: outputs/x: no such folder (a local path")
