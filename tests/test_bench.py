"""Every bench script runs in its tiny mode and prints one JSON object with its figures; the GPU script's
analytic FLOP count equals torch's FLOP counter on real models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from gpu import mae_forward_flops, vit_forward_flops  # noqa: E402

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}

SCRIPTS = {
    "input_pipeline.py": [
        "finetune_workers0",
        "finetune_workers2",
        "mae_workers0",
        "mae_workers2",
    ],
    "trainer_overhead.py": ["plain_trainer_s_per_step", "fer_trainer_s_per_step", "fer_over_plain"],
    "data_prep.py": ["faces_prepared", "images_per_s", "peak_rss_mib", "wall_s"],
    "gpu.py": ["mae_pretraining", "finetuning", "projections", "peak_tflops_used"],
    "cpu_training.py": ["cpu", "bf16_units", "threads", "scripts_choose", "runs"],
}


def run_tiny(script: str, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--tiny", *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # the whole stdout is one JSON object


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_bench_script_runs_in_tiny_mode_and_prints_one_json_object_with_its_figures(script):
    out = run_tiny(script)
    for key in SCRIPTS[script]:
        assert key in out, f"{script}: missing {key} in {sorted(out)}"
    if script == "input_pipeline.py":
        for key in SCRIPTS[script]:
            row = out[key]
            assert {"example_images_per_s", "reference_images_per_s", "fast_images_per_s", "fast_over_example"} <= set(
                row
            )
            assert row["fast_images_per_s"] > 0 and row["fast_uint8_images_per_s"] > 0
            if key.endswith("workers0"):
                assert 0 < row["fast_uint8_plus_cpu_normalize_images_per_s"] < row["fast_uint8_images_per_s"]
    if script == "gpu.py":
        for task in ("mae_pretraining", "finetuning"):
            assert out[task]["eager"]["4"]["images_per_s"] > 0
            assert out[task]["search"]["largest_batch"] >= 4
        assert out["projections"]["pretrain_300_epochs_affectnet"]["images"] == 300 * 269_316
        assert {"finetune_rafdb", "finetune_affectnet8", "finetune_ferplus"} <= set(out["projections"])
        assert set(out["input_handoff"]["copy_ms"]) == {"float32_rgb", "uint8_rgb", "uint8_gray"}
        assert out["input_handoff"]["normalize_ms"] > 0
    if script == "cpu_training.py":
        from modeling.precision import choose_training_precision

        bf16, why = choose_training_precision("cpu", "auto", False, out["bf16_units"])
        assert out["scripts_choose"] == why
        [run] = out["runs"]  # --dtype auto: the precision the scripts use on this CPU
        assert run["dtype"] == ("bf16 autocast" if bf16 else "float32")
        assert run["images_per_s"] > 0 and run["gflop_per_image"] > 0 and run["matmul_peak_gflops"] > 0
    if script == "data_prep.py":
        assert out["faces_prepared"] == 24 and out["peak_rss_mib"] > 0


def test_cpu_training_bench_compares_both_dtypes_for_the_mae_step():
    out = run_tiny("cpu_training.py", "--mae", "--dtype", "both")
    assert out["step"] == "MAE pretraining"
    assert [r["dtype"] for r in out["runs"]] == ["float32", "bf16 autocast"]
    # The flop counter sees the same model in both dtypes.
    assert out["runs"][0]["gflop_per_image"] == out["runs"][1]["gflop_per_image"] > 0


def test_cpu_training_bench_profiles_the_distillation_step_and_compares_attention_kernels():
    out = run_tiny("cpu_training.py", "--dtype", "fp32", "--teacher", "--profile", "--attention", "both")
    assert [(r["attention"], r["teacher"], r["compiled"]) for r in out["runs"]] == [
        ("sdpa", True, False),
        ("eager", True, False),
    ]
    sdpa, eager = out["runs"]
    for run in out["runs"]:
        shares = run["time_by_op"]
        assert abs(sum(shares.values()) - 1) < 0.01 and shares["matmul"] > 0 and "optimizer" in shares
        assert shares["teacher convolutions"] > 0  # the teacher's forward is in every step
    assert "attention" in sdpa["time_by_op"] and "attention" not in eager["time_by_op"]  # eager: matmuls + softmax
    # the teacher's convolutions count in the step's FLOPs: more than the student alone
    alone = run_tiny("cpu_training.py", "--dtype", "fp32")["runs"][0]
    assert sdpa["gflop_per_image"] > alone["gflop_per_image"]


def test_op_groups_of_the_profile():
    from cpu_training import op_group

    assert op_group("aten::addmm") == "matmul" and op_group("aten::mm") == "matmul"
    assert op_group("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert op_group("aten::_fused_adamw_") == "optimizer"
    assert op_group("aten::mkldnn_convolution") == "teacher convolutions"
    assert op_group("aten::native_layer_norm") == "normalisation"
    assert op_group("aten::_to_copy") == "casts and copies"
    assert op_group("aten::something_new") == "other"


def test_gpu_bench_flop_formulas_equal_torch_flop_counter_with_eager_attention():
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import ViTForImageClassification

    from modeling.labels import FERPLUS_LABELS
    from modeling.models.mae import build_mae_for_pretraining
    from modeling.models.sizes import mae_config, vit_config

    decoder = {"decoder_hidden_size": 16, "decoder_num_hidden_layers": 1, "decoder_intermediate_size": 48}
    mae = mae_config("tiny", image_size=32, patch_size=8, **TINY, **decoder, decoder_num_attention_heads=2)
    vit = vit_config("tiny", image_size=32, patch_size=8, labels=FERPLUS_LABELS, **TINY)
    for config, build, formula in ((mae, build_mae_for_pretraining, mae_forward_flops),
                                   (vit, ViTForImageClassification, vit_forward_flops)):  # fmt: skip
        config._attn_implementation = "eager"  # the counter sees the attention matmuls as bmm
        model = build(config).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(pixel_values=torch.randn(1, 3, 32, 32))
        assert counter.get_total_flops() == formula(config)


def test_gpu_script_compiled_path_runs_through_torch_compile_on_the_cpu():
    """The GPU profile's torch.compile phase, which no session has yet run on a GPU, at least compiles and steps."""
    out = run_tiny("gpu.py", "--compile")
    for task in ("mae_pretraining", "finetuning"):
        assert out[task]["compiled"]["4"]["images_per_s"] > 0, out[task]
    assert not out["skipped_for_time"]
