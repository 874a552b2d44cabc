"""``--help`` that helps (issue 28): the scripts say how the README runs them (a JSON recipe) on the first screen and
list their own options before the Trainer's; ``--optim`` offers what works; no help shows reST markup or says its
default twice."""

import argparse
import importlib
import json
import re
import sys
from pathlib import Path

import pytest

from modeling.cli import UsageError
from modeling.training.recipes import TRAINER_GROUP

ROOT = Path(__file__).resolve().parents[1]
FINETUNE_RECIPE = ROOT / "configs" / "finetune_vit_tiny_ferplus_cpu.json"
sys.path.insert(0, str(ROOT))
import run_finetune  # noqa: E402
import run_mae  # noqa: E402

sys.path.remove(str(ROOT))

SCRIPTS = {"run_finetune.py": run_finetune, "run_mae.py": run_mae}


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_scripts_help_shows_the_recipe_way_on_the_first_screen(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        SCRIPTS[name].main(["--help"])
    assert exit_info.value.code == 0
    first_screen = "\n".join(capsys.readouterr().out.splitlines()[:25])
    assert first_screen.startswith(f"usage: {name} RECIPE.json [--flag value ...]\n")
    assert f"python {name} configs/" in first_screen and "JSON recipe" in first_screen
    assert "``" not in first_screen


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_scripts_own_option_groups_come_before_the_trainers(name):
    parser = SCRIPTS[name].build_parser()
    groups = {g.title: {a.dest for a in g._group_actions} for g in parser._action_groups if g._group_actions}
    titles = [t for t in groups if t not in ("options", "positional arguments")]
    assert titles == ["Model", "Data", "Training (this project's options and recipe defaults)", TRAINER_GROUP]
    assert {"model_name_or_path", "model_size"} <= groups["Model"] and "data_dir" in groups["Data"]
    assert {"base_learning_rate", "cpu_precision", "weight_decay"} <= groups[titles[2]]
    assert {"learning_rate", "optim", "output_dir"} <= groups[TRAINER_GROUP]
    assert "base_learning_rate" not in groups[TRAINER_GROUP]


@pytest.mark.parametrize("name", SCRIPTS)
def test_optim_offers_the_two_adamw_implementations_only(name, tmp_path):
    parser = SCRIPTS[name].build_parser()
    (optim,) = [a for a in parser._actions if a.dest == "optim"]
    assert optim.choices == ["adamw_torch_fused", "adamw_torch"] and "AdamW" in optim.help
    with pytest.raises(UsageError, match=r"argument --optim: invalid choice: 'sgd'"):
        SCRIPTS[name].main(["--data_dir", str(tmp_path), "--optim", "sgd"])


def test_optim_from_a_recipe_or_after_one_is_a_one_line_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"^--optim 'sgd': choose one of \['adamw_torch_fused', 'adamw_torch'\]$"):
        run_finetune.main([str(FINETUNE_RECIPE), "--data_dir", str(tmp_path), "--optim", "sgd"])
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"data_dir": str(tmp_path), "optim": "adafactor"}))
    with pytest.raises(UsageError, match=r"^--optim 'adafactor': choose one of"):
        run_mae.main([str(recipe)])


def test_a_recipe_with_adamw_torch_still_parses():
    _, _, training_args = run_finetune.build_parser().parse_dict(
        {"data_dir": ".", "optim": "adamw_torch", "output_dir": "out"}
    )
    assert training_args.optim == "adamw_torch"


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from tests.test_demo import load_demo_app

    found = {name: module.build_parser() for name, module in SCRIPTS.items()}
    demo_app = load_demo_app()
    found["demo/app.py"] = demo_app.ScriptArgumentParser(demo_app.DemoArguments)
    for module in ("modeling.inference.fer_predict", "modeling.hub.recreate"):
        found[module] = _parser_of(importlib.import_module(module))
    return found


def _parser_of(module) -> argparse.ArgumentParser:
    """The ArgumentParser a module's command builds, caught as it parses ``--help``."""
    caught = []
    original = argparse.ArgumentParser.parse_known_args

    def spy(self, *args, **kwargs):
        caught.append(self)
        raise SystemExit(0)

    argparse.ArgumentParser.parse_known_args = spy
    try:
        entry = getattr(module, "parse_args", None) or module.main
        with pytest.raises(SystemExit):
            entry(["--help"])
    finally:
        argparse.ArgumentParser.parse_known_args = original
    return caught[0]


def test_no_option_says_its_default_twice_or_shows_default_none():
    for name, parser in _parsers().items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            shown = formatter._get_help_string(action)
            assert "(default: None)" not in shown, (name, action.dest)
            assert not re.search(r"default.*\(default: ", shown, re.IGNORECASE | re.DOTALL), (name, action.dest, shown)


def test_the_demos_help_explains_its_defaults_once(capsys):
    from tests.test_demo import load_demo_app

    with pytest.raises(SystemExit):
        load_demo_app().main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    host = out[out.index("--host HOST ") : out.index("--port PORT ")]
    assert host.endswith("(default: $GRADIO_SERVER_NAME, else 127.0.0.1; Spaces set 0.0.0.0) ")
    assert host.count("default") == 1 and "(default: None)" not in out


def test_fer_predict_help_has_no_rest_markup_and_shows_its_defaults(capsys):
    from modeling.inference.fer_predict import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "``" not in out and ":mod:" not in out and ":class:" not in out
    for flag, default in (("--margin", "0.2"), ("--min_face_size", "30"), ("--batch_size", "64")):
        assert re.search(rf"{flag} \S+ .*?\(default: {re.escape(default)}\)", out), flag


def test_recreate_help_says_it_takes_hours_and_explains_work_dir_and_dest(capsys):
    from modeling.hub import recreate

    with pytest.raises(SystemExit):
        recreate.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    recorded = json.loads((recreate.ROOT / "results" / "default_model_recipe" / "recipe_time.json").read_text())
    hours = f"{recorded['cpu_hours']:.2f} CPU hours, {recorded['wall_hours']:.2f} h wall"
    assert "It takes hours" in out and hours in out and "recipe_time.json" in out  # the help quotes the record
    assert re.search(r"--work_dir WORK_DIR Where the stages write: .*resumes an interrupted one", out)
    assert re.search(r"--dest DEST Where the last stage ships the selected model .*\(default: \S+default_model\)", out)


@pytest.mark.parametrize(
    "module",
    [
        "modeling.hub.ship",
        "modeling.hub.push",
        "modeling.hub.recreate",
        "modeling.inference.export",
        "modeling.inference.evaluate",
        "modeling.models.import_checkpoint",
        "modeling.data.ferplus_layout",
        "modeling.training.teacher",
    ],
)
def test_module_commands_describe_themselves_without_rest_markup(module):
    description = _parser_of(importlib.import_module(module)).description
    assert description and "``" not in description and ":mod:" not in description and ":class:" not in description
