"""Training precision: bf16 autocast on CPUs with bf16 units, float32 elsewhere, by default (NOTES #23)."""

from __future__ import annotations

import pytest
import torch

from modeling import precision
from modeling.precision import apply_training_precision, choose_training_precision, cpu_bf16_units
from modeling.training.trainer import FERTrainer
from tests.test_trainer import RandomImages, make_args, tiny_vit


def test_cpu_bf16_units_are_read_from_the_cpu_flags(tmp_path):
    amd = tmp_path / "amd"
    amd.write_text(
        "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 sha_ni\n\nprocessor\t: 1\nflags\t\t: avx2\n"
    )
    intel = tmp_path / "intel"
    intel.write_text("flags\t\t: avx2 avx512f amx_bf16 amx_tile avx512_bf16\n")
    avx2_only = tmp_path / "avx2"
    avx2_only.write_text("flags\t\t: fpu sse avx avx2 fma\n")
    assert cpu_bf16_units(amd) == ["avx512_bf16"]
    assert cpu_bf16_units(intel) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bf16_units(avx2_only) == []


@pytest.mark.parametrize(
    ("units", "cpu_precision", "bf16_flag", "expected"),
    [
        (["amx_bf16"], "auto", False, True),  # Intel with AMX: bf16 by default
        (["avx512_bf16"], "auto", False, True),  # EPYC with AVX512-BF16
        ([], "auto", False, False),  # AVX2-only EPYC: fp32, bf16 would be emulated
        (["amx_bf16"], "fp32", False, False),  # forced off
        ([], "bf16", False, True),  # forced on (with a warning)
        ([], "auto", True, True),  # --bf16 true asks for it anywhere
    ],
)
def test_the_cpu_default_follows_the_bf16_units(units, cpu_precision, bf16_flag, expected):
    bf16, why = choose_training_precision("cpu", cpu_precision, bf16_flag, units)
    assert bf16 is expected
    assert ("bf16" in why) if expected else ("float32" in why)


def test_accelerators_follow_the_bf16_flag_and_contradictions_are_refused():
    assert choose_training_precision("cuda", "auto", True, [])[0] is True
    assert choose_training_precision("cuda", "auto", False, ["amx_bf16"])[0] is False
    with pytest.raises(ValueError, match="contradicts"):
        choose_training_precision("cpu", "fp32", True, [])
    with pytest.raises(ValueError, match="cpu_precision"):
        choose_training_precision("cpu", "fp16", False, [])


@pytest.mark.parametrize("units", [["avx512_bf16"], []])
def test_the_trainer_runs_its_forward_in_the_chosen_dtype(units, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda *a: units)
    args = make_args(tmp_path)
    why = apply_training_precision(args, "auto")
    assert why.startswith("bf16 autocast on CPU" if units else "float32 on CPU")
    seen = []
    model = tiny_vit()
    model.classifier.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    args.max_steps = 1
    FERTrainer(model=model, args=args, train_dataset=RandomImages(n=8)).train()
    assert seen == [torch.bfloat16 if units else torch.float32]
