"""Training throughput on this CPU, in the precision the scripts choose, against the same process's matmul peak.

    python bench/cpu_training.py                                   # the study ViT: 6 layers, width 192, 48 px, patch 8
    python bench/cpu_training.py --patch_size 4 --mae              # the MAE training step of the same encoder
    python bench/cpu_training.py --dtype both                      # fp32 and bf16 autocast side by side
    python bench/cpu_training.py --tiny                            # seconds, for the test
    # the shipped recipe's last stage: patch 6 at 72 px, batch 128, the 48 px teacher's forward in every step,
    # where the time goes (--profile), eager attention against SDPA, and torch.compile
    python bench/cpu_training.py --patch_size 6 --image_size 72 --batch_size 128 --teacher --profile \
        --attention both --compile

One training step is forward + backward + fused AdamW on a batch of random images (no data loading: this is
the model's cost). FLOPs per step come from torch's flop counter (``torch.utils.flop_counter``: matmuls,
convolutions and attention, forward and backward); the matmul peak is a square ``--peak_size`` matmul in the same
dtype and thread count, timed in the same process. The dtype ``auto`` is what ``run_finetune.py`` and
``run_mae.py`` pick on this CPU (bf16 autocast with bf16 units, else float32: ``modeling/precision.py``).
Prints one JSON object; figures are medians of ``--repeats`` timed runs of ``--steps`` steps each.

``--teacher`` adds what a distillation step adds: the frozen ResNet-18 teacher's forward pass
(``modeling.models.teacher``, trained at 48 px, so a larger batch is resized for it first) under the same
autocast. ``--profile`` adds ``time_by_op``: torch.profiler's self CPU time of one more ``--steps`` steps, summed
into groups (matmul, attention, softmax, normalisation, activation, optimizer, casts and copies, teacher
convolutions, other) and given as shares. ``--attention both`` measures transformers' SDPA kernel and its eager
attention side by side; ``--compile`` adds each configuration again under ``torch.compile`` (its compile time
reported apart, not in the step time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modeling.precision import choose_training_precision, cpu_bf16_units, cpu_model  # noqa: E402


def matmul_peak(dtype: torch.dtype, size: int, repeats: int) -> float:
    """GFLOP/s of a ``size`` x ``size`` matmul in ``dtype`` (median of ``repeats``)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def build(args) -> tuple[torch.nn.Module, dict]:
    from modeling.labels import FERPLUS_LABELS
    from modeling.models.mae import build_mae_for_pretraining
    from modeling.models.sizes import mae_config, vit_config
    from modeling.training.recipes import parse_overrides

    overrides = parse_overrides(args.config_overrides)
    torch.manual_seed(0)
    if args.mae:
        config = mae_config(args.size, image_size=args.image_size, patch_size=args.patch_size, **overrides)
        config.mask_ratio = args.mask_ratio
        model = build_mae_for_pretraining(config)
    else:
        config = vit_config(
            args.size, image_size=args.image_size, patch_size=args.patch_size, labels=FERPLUS_LABELS, **overrides
        )
        from transformers import ViTForImageClassification

        model = ViTForImageClassification(config)
    shape = {
        "hidden_size": config.hidden_size,
        "layers": config.num_hidden_layers,
        "image_size": args.image_size,
        "patch_size": args.patch_size,
        "tokens": (args.image_size // args.patch_size) ** 2,
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
    }
    return model.train(), shape


def measure(args, bf16: bool, attention: str = "sdpa", compiled: bool = False) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    model, shape = build(args)
    model.set_attn_implementation(attention)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    labels = torch.randint(0, 8, (args.batch_size,))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    teacher = None
    if args.teacher:
        from modeling.models.teacher import FaceResNet

        teacher = FaceResNet(8, image_size=args.teacher_size).eval().requires_grad_(False)
        teacher = teacher.to(memory_format=torch.channels_last)

    def run(forward) -> None:
        with autocast:
            if teacher is not None:
                with torch.no_grad():
                    teacher(images.contiguous(memory_format=torch.channels_last))
            out = forward(pixel_values=images) if args.mae else forward(pixel_values=images, labels=labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    counter = FlopCounterMode(display=False)  # counted eagerly: the compiled step does the same arithmetic
    with counter:
        run(model)
    flops = counter.get_total_flops()
    forward = torch.compile(model) if compiled else model
    compile_s = None
    if compiled:  # the first compiled step compiles; timed apart
        start = time.perf_counter()
        run(forward)
        compile_s = time.perf_counter() - start

    def step() -> None:
        run(forward)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        times.append((time.perf_counter() - start) / args.steps)
    step_s = statistics.median(times)
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_peak(dtype, args.peak_size, max(3, args.repeats))
    achieved = flops / step_s / 1e9
    row = {
        "dtype": "bf16 autocast" if bf16 else "float32",
        "attention": attention,
        "compiled": compiled,
        "teacher": teacher is not None,
        **shape,
        "step_ms": round(1000 * step_s, 2),
        "step_ms_range": [round(1000 * min(times), 2), round(1000 * max(times), 2)],
        "images_per_s": round(args.batch_size / step_s, 1),
        "gflop_per_image": round(flops / args.batch_size / 1e9, 4),
        "achieved_gflops": round(achieved, 1),
        "matmul_peak_gflops": round(peak, 1),
        "fraction_of_peak": round(achieved / peak, 3),
    }
    if compile_s is not None:
        row["compile_s"] = round(compile_s, 1)
    if args.profile:
        row["time_by_op"] = profile_steps(step, args.steps)
    return row


# Profiler op names -> groups, first match wins (aten names of torch 2.x on the CPU).
OP_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("optimizer", ("adam",)),
    ("attention", ("scaled_dot_product", "flash_attention")),
    ("teacher convolutions", ("convolution", "conv2d", "mkldnn_convolution", "batch_norm", "max_pool")),
    ("matmul", ("addmm", "aten::mm", "bmm", "matmul", "linear")),
    ("softmax", ("softmax",)),
    ("normalisation", ("layer_norm",)),
    ("activation", ("gelu", "relu")),
    ("casts and copies", ("copy_", "_to_copy", "aten::to", "contiguous", "clone", "cat")),
)


def op_group(name: str) -> str:
    lowered = name.lower()
    for group, keys in OP_GROUPS:
        if any(k in lowered for k in keys):
            return group
    return "other"


def profile_steps(step, steps: int) -> dict:
    """Shares of self CPU time by op group over ``steps`` profiled steps (after the timed ones)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        group = op_group(event.key)
        totals[group] = totals.get(group, 0.0) + event.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {g: round(t / whole, 3) for g, t in sorted(totals.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="tiny")
    p.add_argument("--config_overrides", default="num_hidden_layers=6")
    p.add_argument("--image_size", type=int, default=48)
    p.add_argument("--patch_size", type=int, default=8)
    p.add_argument("--mae", action="store_true", help="The MAE pretraining step (encoder on the visible tokens)")
    p.add_argument("--mask_ratio", type=float, default=0.75)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--dtype", choices=("auto", "fp32", "bf16", "both"), default="auto")
    p.add_argument("--threads", type=int, default=None, help="Default: torch's (all cores)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peak_size", type=int, default=2048)
    p.add_argument("--attention", choices=("sdpa", "eager", "both"), default="sdpa", help="transformers' kernel")
    p.add_argument("--compile", action="store_true", help="Each configuration again under torch.compile")
    p.add_argument("--teacher", action="store_true", help="Add the distillation teacher's forward to every step")
    p.add_argument("--teacher_size", type=int, default=48, help="The size the teacher reads (it was trained at)")
    p.add_argument("--profile", action="store_true", help="Add time_by_op: profiler shares by op group")
    p.add_argument("--tiny", action="store_true", help="hidden 32, 2 layers, 32 px: seconds (for the test)")
    args = p.parse_args(argv)
    if args.tiny:
        args.config_overrides = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"
        if args.mae:
            args.config_overrides += ",decoder_hidden_size=16,decoder_num_hidden_layers=1,decoder_intermediate_size=32"
        args.image_size, args.batch_size, args.steps, args.repeats, args.warmup, args.peak_size = 32, 8, 1, 1, 1, 256
        args.teacher_size = 16
    if args.threads:
        torch.set_num_threads(args.threads)

    units = cpu_bf16_units()
    auto_bf16, why = choose_training_precision("cpu", "auto", False, units)
    dtypes = {"auto": [auto_bf16], "fp32": [False], "bf16": [True], "both": [False, True]}[args.dtype]
    attentions = ["sdpa", "eager"] if args.attention == "both" else [args.attention]
    report = {
        "cpu": cpu_model(),
        "bf16_units": units,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "step": "MAE pretraining" if args.mae else "classification fine-tuning",
        "batch_size": args.batch_size,
        "scripts_choose": why,
        "runs": [
            measure(args, bf16, attention, compiled)
            for compiled in ([False, True] if args.compile else [False])
            for attention in attentions
            for bf16 in dtypes
        ],
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
