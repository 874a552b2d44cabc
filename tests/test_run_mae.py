"""run_mae.py end to end through main(), on the real FER+ mini/ faces in the official layout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from modeling.models.mae import position_tables_are_zero
from tests.tiny import to_argv

ROOT = Path(__file__).resolve().parents[1]
TINY_OVERRIDES = (
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,"
    "decoder_hidden_size=16,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,decoder_intermediate_size=32"
)


def mae_args(data_dir, out, cache, **extra):
    args = {
        "dataset_name": "ferplus",
        "data_dir": str(data_dir),
        "cache_dir": str(cache),
        "model_size": "tiny",
        "config_overrides": TINY_OVERRIDES,
        "image_size": 32,
        "patch_size": 8,
        "train_val_split": 0.1,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "max_steps": 4,
        "save_steps": 2,
        "logging_steps": 1,
        "do_train": True,
        "do_eval": True,
        "use_cpu": True,
        "report_to": "none",
        "dataloader_num_workers": 0,
        "output_dir": str(out),
        "seed": 0,
    }
    args.update(extra)
    return to_argv(args)


def run_mae_main(argv):
    sys.path.insert(0, str(ROOT))
    try:
        import run_mae

        return run_mae.main(argv)
    finally:
        sys.path.remove(str(ROOT))


def test_run_mae_pretrains_on_real_faces_and_saves_a_reloadable_model(ferplus_mini_dir, tmp_path):
    from transformers import ViTMAEForPreTraining

    out = tmp_path / "mae"
    results = run_mae_main(mae_args(ferplus_mini_dir, out, tmp_path / "cache"))
    model = ViTMAEForPreTraining.from_pretrained(out)
    assert not position_tables_are_zero(model)
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()
    for png in (out / "reconstructions.png", out / "checkpoint-2" / "reconstructions.png"):
        with Image.open(png) as im:
            im.load()
            assert im.width > 3 * 32 and im.height > 32
    saved = json.loads((out / "all_results.json").read_text())
    for key in ("train_loss", "eval_loss", "eval_start_loss", "train_samples_per_second", "learning_rate"):
        assert key in saved, key
    # lr = blr * total batch / 256, logged as an absolute value
    assert saved["learning_rate"] == pytest.approx(1.5e-4 * 8 / 256)
    assert results["eval_loss"] == saved["eval_loss"]


def test_run_mae_resumes_from_its_last_checkpoint_to_the_same_final_step(ferplus_mini_dir, tmp_path):
    import shutil

    out = tmp_path / "mae"
    run_mae_main(mae_args(ferplus_mini_dir, out, tmp_path / "cache", do_eval=False))
    # Simulate a run stopped right after its first checkpoint.
    shutil.rmtree(out / "checkpoint-4")
    (out / "model.safetensors").unlink()
    run_mae_main(mae_args(ferplus_mini_dir, out, tmp_path / "cache", do_eval=False))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert steps == [1, 2, 3, 4]  # history carried over from checkpoint-2, then steps 3 and 4
    assert (out / "model.safetensors").is_file()


def test_run_mae_runs_on_two_cpu_processes_with_torchrun(ferplus_mini_dir, tmp_path):
    out = tmp_path / "ddp"
    argv = mae_args(
        ferplus_mini_dir, out, tmp_path / "cache", max_steps=3, save_steps=10, per_device_train_batch_size=4
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
        "run_mae.py",
        *argv,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["total_batch_size"] == 8  # 2 processes x 4
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3


def test_run_mae_concatenates_several_datasets_and_streams_image_folders(ferplus_mini_dir, tmp_path):
    # Two datasets at once: the FER+ train split (160 majority faces) and a plain folder of 43 faces.
    both = run_mae_main(
        mae_args(
            f"{ferplus_mini_dir},{ferplus_mini_dir / 'FER2013Valid'}", tmp_path / "two", tmp_path / "cache",
            do_eval=False, max_steps=1, train_val_split=0.0, dataset_name="ferplus,imagefolder",
        )
    )  # fmt: skip
    assert both["train_faces"] == 160 + 43
    # Streaming: image files are read lazily, the held-out faces taken from the head of the stream.
    streamed = run_mae_main(
        mae_args(
            ferplus_mini_dir / "FER2013Train", tmp_path / "stream", tmp_path / "cache", streaming=True, max_steps=2,
            max_eval_samples=8, dataset_name="imagefolder",
        )
    )  # fmt: skip
    assert streamed["held_out_faces"] == 8 and "eval_loss" in streamed
    assert (tmp_path / "stream" / "reconstructions.png").is_file()


def test_run_mae_normalising_on_the_device_gives_the_same_losses(ferplus_mini_dir, tmp_path):
    losses = []
    for on_device in (False, True):
        out = tmp_path / f"on_device_{on_device}"
        run_mae_main(mae_args(ferplus_mini_dir, out, tmp_path / "cache", max_steps=2, normalize_on_device=on_device))
        saved = json.loads((out / "all_results.json").read_text())
        losses.append((saved["train_loss"], saved["eval_loss"]))
    assert losses[0] == losses[1]
