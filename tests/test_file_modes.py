"""Saved models get the file mode of every other output (modeling/models/file_modes.py): safetensors writes its
files 0600, so model.safetensors stayed unreadable to others beside a 0644 config.json."""

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from modeling.models.file_modes import output_file_mode, share_like_other_outputs, umask


@pytest.fixture(params=[0o022, 0o027], ids=["umask_022", "umask_027"])
def mask(request):
    """The process's umask for the test, put back afterwards."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` -> its permission bits."""
    return {
        str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_the_umask_is_read_without_changing_it_and_gives_the_mode_of_a_new_file(mask, tmp_path):
    (tmp_path / "new.txt").write_text("x")
    assert umask() == mask and os.umask(mask) == mask
    assert output_file_mode() == stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o666 & ~mask


def test_save_pretrained_weights_get_the_umask_mode_and_other_files_are_left_alone(mask, tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "model.safetensors")  # safetensors' own mode
    (tmp_path / "sub").mkdir()
    save_file({"w": torch.zeros(2)}, tmp_path / "sub" / "adapter_model.safetensors")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "notes.txt").chmod(0o600)  # a file the user restricted: not ours to widen

    changed = share_like_other_outputs(tmp_path)

    expected = 0o666 & ~mask
    assert modes(tmp_path) == {
        "model.safetensors": expected,
        "notes.txt": 0o600,
        "sub/adapter_model.safetensors": expected,
    }
    assert changed == [tmp_path / "model.safetensors", tmp_path / "sub" / "adapter_model.safetensors"]
    assert share_like_other_outputs(tmp_path) == [] and share_like_other_outputs(tmp_path / "missing") == []


def test_an_imported_checkpoint_is_saved_with_every_file_0644_under_umask_022(tmp_path):
    from modeling.models.import_checkpoint import convert_checkpoint
    from tests.test_import_checkpoint import tiny_timm_vit

    torch.save({"model": tiny_timm_vit().state_dict()}, tmp_path / "vit.pth")
    old = os.umask(0o022)
    try:
        out = convert_checkpoint(tmp_path / "vit.pth", tmp_path / "hf", num_heads=2)
    finally:
        os.umask(old)
    files = modes(out)
    assert "model.safetensors" in files and set(files.values()) == {0o644}, files


def test_shipping_a_run_whose_weights_are_0600_gives_0644_copies(tmp_path):
    from modeling.hub import ship
    from tests.test_ship import PEERS, save_run

    run = save_run(tmp_path / "run")
    (run / "model.safetensors").chmod(0o600)  # as save_pretrained left it before the runs shared their files
    (tmp_path / "peers.json").write_text(json.dumps(PEERS))
    old = os.umask(0o022)
    try:
        ship.ship(run, tmp_path / "dest", tmp_path / "peers.json")
    finally:
        os.umask(old)
    files = modes(tmp_path / "dest")
    assert "model.safetensors" in files and set(files.values()) == {0o644}, files


def test_run_mae_and_run_finetune_save_every_file_0644_under_umask_022(ferplus_mini_dir, tmp_path):
    from tests.test_run_finetune import finetune_args, run_finetune_main
    from tests.test_run_mae import mae_args, run_mae_main

    old = os.umask(0o022)
    try:
        run_mae_main(mae_args(ferplus_mini_dir, tmp_path / "mae", tmp_path / "cache", do_eval=False, max_steps=2))
        argv = finetune_args(tmp_path / "mae", ferplus_mini_dir, tmp_path / "ft", tmp_path / "cache", max_steps=2)
        run_finetune_main(argv)
    finally:
        os.umask(old)
    for run in ("mae", "ft"):
        files = modes(tmp_path / run)
        weights = [name for name in files if name.endswith(".safetensors")]
        assert "model.safetensors" in weights and any(name.startswith("checkpoint-") for name in weights), files
        assert {name: mode for name, mode in files.items() if mode != 0o644} == {}, run
