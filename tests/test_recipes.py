"""Every recipe in configs/ parses with its script's parser, so a recipe that stops parsing fails CI."""

import json
import re
import sys
from pathlib import Path

import pytest
from transformers import HfArgumentParser

from modeling.training.recipes import load_recipe, parse_overrides, parse_script_args

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import run_finetune  # noqa: E402
import run_mae  # noqa: E402

RECIPES = sorted((ROOT / "configs").glob("*.json"))


def parser_for(path: Path) -> HfArgumentParser:
    if "mask_ratio" in load_recipe(path):  # pretraining recipes set the MAE mask ratio
        return HfArgumentParser((run_mae.ModelArguments, run_mae.DataTrainingArguments, run_mae.MAETrainingArguments))
    return HfArgumentParser(
        (run_finetune.ModelArguments, run_finetune.DataTrainingArguments, run_finetune.FinetuneTrainingArguments)
    )


def test_there_are_pretraining_and_finetuning_recipes():
    names = {p.name for p in RECIPES}
    assert "mae_vit_base_affectnet.json" in names and "mae_vit_tiny_ferplus_cpu.json" in names


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_parses_with_its_script(path):
    import torch

    extra = []
    if load_recipe(path).get("bf16") and not torch.cuda.is_available():
        extra = ["--bf16", "false"]  # GPU recipes: TrainingArguments refuses bf16 on a CPU-only machine
    model_args, data_args, training_args = parse_script_args(parser_for(path), [str(path), *extra])
    assert training_args.output_dir
    assert data_args.data_dir


def test_a_misspelled_recipe_key_is_an_error(tmp_path):
    bad = tmp_path / "mae_bad.json"
    recipe = load_recipe(ROOT / "configs" / "mae_vit_tiny_ferplus_cpu.json")
    bad.write_text(json.dumps({**recipe, "mask_ration": 0.5}))
    with pytest.raises(ValueError, match="mask_ration"):
        parse_script_args(parser_for(bad), [str(bad)])


def test_flags_after_a_recipe_override_its_values():
    path = ROOT / "configs" / "mae_vit_tiny_ferplus_cpu.json"
    model_args, data_args, training_args = parse_script_args(
        parser_for(path), [str(path), "--mask_ratio", "0.5", "--data_dir", "/elsewhere"]
    )
    assert model_args.mask_ratio == 0.5 and data_args.data_dir == "/elsewhere"


def test_config_overrides_parse_numbers_and_booleans():
    assert parse_overrides("num_hidden_layers=6,qkv_bias=false,layer_norm_eps=1e-6") == {
        "num_hidden_layers": 6,
        "qkv_bias": False,
        "layer_norm_eps": 1e-6,
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides("oops")


def test_the_outputs_paths_of_the_readme_and_docs_are_the_recipes():
    """``outputs/...`` in README.md, docs/ and demo/README.md is a recipe's output_dir or model_name_or_path (or
    under one), or written by the command on its own line (import_checkpoint's output folder, an explicit
    ``--output_dir``, as the teacher's command has no recipe): a newcomer who runs
    the recipes finds the folders the other commands are shown with."""
    produced = set()
    for path in RECIPES:
        recipe = load_recipe(path)
        produced |= {
            recipe[k] for k in ("output_dir", "model_name_or_path") if str(recipe.get(k)).startswith("outputs/")
        }
    assert {"outputs/mae_tiny", "outputs/ferplus_tiny"} <= produced
    tiny_mae = load_recipe(ROOT / "configs" / "mae_vit_tiny_ferplus_cpu.json")
    tiny_finetune = load_recipe(ROOT / "configs" / "finetune_vit_tiny_ferplus_cpu.json")
    assert tiny_finetune["model_name_or_path"] == tiny_mae["output_dir"]
    for doc in [ROOT / "README.md", ROOT / "demo" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in doc.read_text().splitlines():
            for found in re.findall(r"outputs/[\w./-]*\w", line):
                written_here = "import_checkpoint" in line or f"--output_dir {found}" in line
                known = any(found == p or found.startswith(p + "/") for p in produced)
                assert known or written_here, f"{doc.name}: {found} is no recipe's output_dir ({line.strip()})"
