"""Command-line mistakes: ``--help`` works everywhere, and a user error is one line ``prog: error: ...`` with exit
status 2 (modeling/cli.py), while ``main(argv)`` called from Python still raises."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modeling.cli import MissingFileError, UsageError, UserError, run_main, user_errors
from modeling.data import DatasetLayoutError, load_fer_dataset

ROOT = Path(__file__).resolve().parents[1]
FINETUNE_RECIPE = ROOT / "configs" / "finetune_vit_tiny_ferplus_cpu.json"
sys.path.insert(0, str(ROOT))
import run_finetune  # noqa: E402
import run_mae  # noqa: E402

sys.path.remove(str(ROOT))


def _run(*args: str) -> subprocess.CompletedProcess:
    """A CLI run from the repository root; all cases here stop while parsing, before any data or model."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def _one_error_line(proc: subprocess.CompletedProcess, prog: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"{prog}: error: ")
    return line


@pytest.mark.parametrize("script", [run_finetune, run_mae], ids=["run_finetune", "run_mae"])
def test_help_of_both_scripts_prints_the_usage_and_exits_0(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--data_dir" in out and "--learning_rate" in out


def test_help_after_a_recipe_prints_the_usage_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_finetune.main([str(FINETUNE_RECIPE), "--help"])
    assert exit_info.value.code == 0
    assert "percentage of train held out" in capsys.readouterr().out


@pytest.mark.parametrize(
    "module",
    [
        "data.__main__",
        "models.import_checkpoint",
        "inference.evaluate",
        "inference.export",
        "training.probe",
        "hub.push",
        "inference.fer_predict",
    ],
)
def test_help_of_every_modeling_cli_formats(module, capsys):
    mod = importlib.import_module(f"modeling.{module}")
    entry = mod.parse_args if module in ("inference.evaluate", "inference.fer_predict") else mod.main
    with pytest.raises(SystemExit) as exit_info:
        entry(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")


def test_a_misspelled_flag_is_a_usage_error_naming_the_closest_flag():
    with pytest.raises(UsageError, match="unknown flag --learning_rat; did you mean --learning_rate?"):
        run_finetune.main(["--learning_rat", "1e-3", "--data_dir", str(ROOT)])


def test_a_misspelled_flag_after_a_recipe_names_the_closest_flag():
    with pytest.raises(ValueError, match="unknown flag --num_train_epoch; did you mean --num_train_epochs?"):
        run_finetune.main([str(FINETUNE_RECIPE), "--num_train_epoch", "3"])


def test_a_misspelled_recipe_key_names_the_closest_key(tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"data_dir": "/data", "mask_ration": 0.5}')
    with pytest.raises(
        UsageError, match=r"recipe.json: unknown key\(s\) \['mask_ration'\]; did you mean 'mask_ratio'"
    ):
        run_mae.main([str(recipe)])


def test_an_unknown_dataset_name_suggests_the_closest_one_in_both_scripts_and_the_loader(tmp_path):
    with pytest.raises(UsageError, match="--dataset_name 'ferplsu'.*did you mean 'ferplus'?"):
        run_finetune.main(["--dataset_name", "ferplsu", "--data_dir", str(tmp_path)])
    with pytest.raises(UsageError, match="--dataset_name 'rafdv'.*did you mean 'rafdb'?"):
        run_mae.main(["--dataset_name", "ferplus,rafdv", "--data_dir", f"{tmp_path},{tmp_path}"])
    with pytest.raises(UsageError, match="unknown FER dataset 'afectnet'.*did you mean 'affectnet'?"):
        load_fer_dataset("afectnet", tmp_path)


def test_a_data_dir_that_is_not_a_directory_stops_the_scripts_while_parsing(tmp_path):
    with pytest.raises(UsageError, match=f"--data_dir {tmp_path / 'nowhere'}: not a directory"):
        run_finetune.main(["--data_dir", str(tmp_path / "nowhere")])
    with pytest.raises(UsageError, match=f"--data_dir {tmp_path / 'nowhere'}: not a directory"):
        run_mae.main(["--dataset_name", "ferplus,rafdb", "--data_dir", f"{tmp_path},{tmp_path / 'nowhere'}"])
    with pytest.raises(DatasetLayoutError, match=r"^ferplus data_dir not found: \S+ is not a directory$"):
        load_fer_dataset("ferplus", tmp_path / "nowhere")


def test_values_refused_by_post_init_are_usage_errors_that_still_are_value_errors(tmp_path):
    with pytest.raises(UsageError, match=r"mask_ratio must be in \[0, 1\), got 1.5"):
        run_mae.main(["--data_dir", str(tmp_path), "--mask_ratio", "1.5"])
    with pytest.raises(ValueError, match="augmentation must be one of"):
        run_finetune.main(["--data_dir", str(tmp_path), "--augmentation", "heavy"])


def test_argparse_errors_of_the_scripts_are_one_usage_error_not_the_whole_usage(tmp_path):
    with pytest.raises(UsageError, match="argument --learning_rate/--learning-rate: invalid float value: 'abc'"):
        run_finetune.main(["--data_dir", str(tmp_path), "--learning_rate", "abc"])


def test_run_main_prints_user_errors_as_one_line_and_lets_bugs_raise(capsys):
    def user_mistake():
        raise DatasetLayoutError("rafdb data_dir not found: /x is not a directory")

    def bug():
        raise KeyError("a bug keeps its traceback")

    assert issubclass(DatasetLayoutError, UserError) and issubclass(DatasetLayoutError, FileNotFoundError)
    assert run_main(user_mistake, "prog") == 2
    assert capsys.readouterr().err == "prog: error: rafdb data_dir not found: /x is not a directory\n"
    with pytest.raises(KeyError):
        run_main(bug, "prog")
    assert run_main(lambda: 1, "prog") == 1 and run_main(lambda: {"accuracy": 1.0}, "prog") == 0


def test_user_errors_turns_the_named_library_errors_into_user_errors_and_lets_the_others_through():
    with pytest.raises(UserError, match="^boom$") as raised:
        with user_errors(OSError):
            raise PermissionError("boom")
    assert isinstance(raised.value.__cause__, PermissionError)
    already = MissingFileError("/x lacks config.json")
    with pytest.raises(MissingFileError) as raised:
        with user_errors(OSError):
            raise already
    assert raised.value is already
    with pytest.raises(KeyError):
        with user_errors(OSError):
            raise KeyError("a bug keeps its traceback")


@pytest.mark.parametrize(
    "module, prog, args",
    [
        ("inference.evaluate", "python -m modeling.inference.evaluate", ["{missing}", "--dataset_name", "ferplus"]),
        ("inference.export", "python -m modeling.inference.export", ["{missing}", "{tmp}/model.onnx"]),
        ("hub.push", "python -m modeling.hub.push", ["{missing}", "someone/fer"]),
        ("inference.fer_predict", "fer-predict", ["{tmp}/face.png", "--no_detect", "--model", "{missing}"]),
        ("data.ferplus_layout", "python -m modeling.data.ferplus_layout", ["{missing}", "{tmp}/official"]),
    ],
    ids=["evaluate", "export", "push", "predict", "ferplus_layout"],
)
def test_a_missing_model_or_source_folder_is_one_error_line_and_status_2_in_every_modeling_cli(
    module, prog, args, tmp_path, capsys
):
    main = importlib.import_module(f"modeling.{module}").main
    missing = tmp_path / "missing"
    argv = [a.format(missing=missing, tmp=tmp_path) for a in args]
    assert run_main(lambda: main(argv), prog) == 2  # fer-predict's main goes through run_main itself
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert str(missing) in line and "Traceback" not in err


# The entry points, as a newcomer meets them (each run imports torch and transformers: a few seconds).
def test_run_finetune_from_the_shell_names_the_misspelled_flag_in_one_line():
    # a model that is there: a missing one is reported first, before the script imports torch (tests/test_model_paths.py)
    model = ["--model_name_or_path", "modeling/default_model"]
    proc = _run("run_finetune.py", str(FINETUNE_RECIPE), "--num_train_epoch", "3", *model)
    line = _one_error_line(proc, "run_finetune.py")
    assert line.endswith("unknown flag --num_train_epoch; did you mean --num_train_epochs?")


def test_run_mae_from_the_shell_names_the_closest_dataset_in_one_line(tmp_path):
    line = _one_error_line(_run("run_mae.py", "--dataset_name", "ferplsu", "--data_dir", str(tmp_path)), "run_mae.py")
    assert line.endswith("did you mean 'ferplus'?")


def test_python_dash_m_modeling_data_reports_a_missing_folder_and_an_unknown_name_in_one_line(tmp_path):
    missing = tmp_path / "missing" / "folder"
    line = _one_error_line(_run("-m", "modeling.data", "ferplus", str(missing)), "python -m modeling.data")
    assert (
        line == f"python -m modeling.data: error: ferplus data_dir not found: {missing.resolve()} is not a directory"
    )
    line = _one_error_line(_run("-m", "modeling.data", "ferplsu", str(tmp_path)), "python -m modeling.data")
    assert line.endswith("did you mean 'ferplus'?")


def test_the_training_scripts_end_their_process_group_before_exit(tmp_path):
    import torch.distributed as dist

    from modeling.cli import end_distributed

    end_distributed()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    end_distributed()
    assert not dist.is_initialized()
    for script in ("run_mae.py", "run_finetune.py"):
        text = (ROOT / script).read_text()
        assert "finally:\n        end_distributed()" in text, script
