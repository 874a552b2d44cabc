"""GPU profile of the base preset at 224 px: MAE pretraining and fine-tuning images/s, model FLOPs utilisation,
peak memory, the largest batch that fits, and projected wall times of the paper's runs. One JSON object.

    python bench/gpu.py                      # one GPU, bf16 autocast, SDPA attention, eager then torch.compile
    python bench/gpu.py --no_compile         # eager only (faster to run)
    python bench/gpu.py --tiny               # CPU dry run with a tiny model (the test keeps this working)
    python bench/gpu.py --tiny --compile     # the same through torch.compile (inductor on the CPU, about a minute)

Synthetic tensors (data loading is not the subject here; see bench/input_pipeline.py), except ``input_handoff``:
the host-to-device copy of a float32 batch against a uint8 one and the trainer's on-device normalisation. A
training step is the real one: forward under ``torch.autocast(bfloat16)``, backward, fused AdamW step, ``zero_grad``.

FLOPs are counted analytically per image (a matmul of an ``[n, a]`` by ``[a, b]`` costs ``2 n a b``):

- per transformer layer at width ``d``, MLP width ``m``, ``n`` tokens:
  ``8 n d^2`` (q, k, v, o projections) + ``4 n d m`` (MLP) + ``4 n^2 d`` (``Q K^T`` and ``A V``);
- patch embedding ``2 L (3 p^2) d`` for ``L`` patches of ``p x p``;
- MAE: the encoder sees ``n_e = L (1 - mask_ratio) + 1`` tokens (75 % masked: 49 + cls = 50 of 197), the
  decoder all ``n_d = L + 1``: decoder embedding ``2 n_e d d_dec``, decoder layers at ``d_dec``/``m_dec``,
  prediction head ``2 n_d d_dec 3 p^2``;
- fine-tuning: the encoder on ``L + 1`` tokens plus the head ``2 d C``;
- training = 3 x forward (the backward pass costs about twice the forward).

MFU = counted training FLOP/s / peak, with the H200 SXM dense bf16 peak of 989 TFLOP/s (NVIDIA's datasheet
figure without sparsity; override with ``--peak_tflops``). Every phase checks a deadline (``--budget_s``,
default 420 s) and is skipped, with a note, once it would overrun, so the script stays under 8 minutes.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
H200_BF16_DENSE_TFLOPS = 989.0
# The paper's runs and this project's recipes (configs/*.json): faces, epochs.
PRETRAIN = {"faces": 269_316, "epochs": 300}  # Li (2022): MAE ViT-B on AffectNet faces
FINETUNE = {  # train-set sizes; epochs of configs/finetune_mae_affectnet_vitb_*.json (MAE fine-tune recipe)
    "rafdb": {"faces": 12_271, "epochs": 100},
    "affectnet8": {"faces": 287_651, "epochs": 20},
    "ferplus": {"faces": 28_558, "epochs": 100},
}
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TINY_DECODER = {
    "decoder_hidden_size": 32,
    "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 64,
}


def layer_flops(tokens: float, width: int, mlp: int) -> float:
    """Forward FLOPs of one transformer layer on ``tokens`` tokens (projections, MLP, attention matmuls)."""
    return 8 * tokens * width**2 + 4 * tokens * width * mlp + 4 * tokens**2 * width


def mae_forward_flops(config) -> float:
    patches = (config.image_size // config.patch_size) ** 2
    patch_dim = 3 * config.patch_size**2
    d, dd = config.hidden_size, config.decoder_hidden_size
    n_enc = int(patches * (1 - config.mask_ratio)) + 1
    n_dec = patches + 1
    return (
        2 * patches * patch_dim * d  # the patch embedding runs on every patch before masking
        + config.num_hidden_layers * layer_flops(n_enc, d, config.intermediate_size)
        + 2 * n_enc * d * dd
        + config.decoder_num_hidden_layers * layer_flops(n_dec, dd, config.decoder_intermediate_size)
        + 2 * n_dec * dd * patch_dim
    )


def vit_forward_flops(config) -> float:
    patches = (config.image_size // config.patch_size) ** 2
    d = config.hidden_size
    return (
        2 * patches * 3 * config.patch_size**2 * d
        + config.num_hidden_layers * layer_flops(patches + 1, d, config.intermediate_size)
        + 2 * d * config.num_labels
    )


class Deadline:
    def __init__(self, budget_s: float):
        self.end = time.perf_counter() + budget_s
        self.skipped: list[str] = []

    def allows(self, seconds: float, what: str) -> bool:
        if time.perf_counter() + seconds > self.end:
            self.skipped.append(what)
            return False
        return True


def build(task: str, args, device: torch.device):
    from transformers import ViTForImageClassification

    from modeling.labels import FERPLUS_LABELS
    from modeling.models.mae import build_mae_for_pretraining
    from modeling.models.sizes import mae_config, vit_config

    size, overrides = ("tiny", dict(TINY)) if args.tiny else (args.size, {})
    if task == "mae":
        config = mae_config(
            size, image_size=args.image_size, patch_size=args.patch_size, **overrides, **(TINY_DECODER if args.tiny else {})
        )  # fmt: skip
        config._attn_implementation = "sdpa"
        model, flops = build_mae_for_pretraining(config), 3 * mae_forward_flops(config)
    else:
        config = vit_config(size, image_size=args.image_size, patch_size=args.patch_size, labels=FERPLUS_LABELS, **overrides)  # fmt: skip
        config._attn_implementation = "sdpa"
        model, flops = ViTForImageClassification(config), 3 * vit_forward_flops(config)
    model = model.to(device).train()
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=fused)
    return model, optimizer, config, flops


def make_step(model, optimizer, task: str, num_labels: int, device: torch.device, image_size: int, compiled: bool):
    forward = torch.compile(model) if compiled else model

    def step(batch: int) -> None:
        pixels = torch.randn(batch, 3, image_size, image_size, device=device)
        inputs = {"pixel_values": pixels}
        if task == "finetune":
            inputs["labels"] = torch.randint(0, num_labels, (batch,), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = forward(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def throughput(step, batch: int, args, device: torch.device) -> dict:
    """Images/s over ``args.steps`` steps after ``args.warmup`` (compilation, allocator warm-up), peak memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        step(batch)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step(batch)
    sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    out = {"batch_size": batch, "s_per_step": round(seconds, 5), "images_per_s": round(batch / seconds, 1)}
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def fits(step, batch: int, device: torch.device) -> bool:
    try:
        step(batch)
        sync(device)
        return True
    except torch.OutOfMemoryError:
        free(device)
        return False


def largest_batch(step, start: int, cap: int, device: torch.device, deadline: Deadline, probes: int) -> dict:
    """Doubling from ``start`` until OOM or ``cap``, then bisection, at most ``probes`` steps in all."""
    ok, bad, tried = 0, None, 0
    batch = start
    while batch <= cap and tried < probes and deadline.allows(20, f"largest batch > {batch}"):
        tried += 1
        if not fits(step, batch, device):
            bad = batch
            break
        ok, batch = batch, batch * 2
    while bad is not None and bad - ok > max(8, ok // 16) and tried < probes and deadline.allows(20, "bisection"):
        tried += 1
        mid = (ok + bad) // 2
        if fits(step, mid, device):
            ok = mid
        else:
            bad = mid
    free(device)
    return {"largest_batch": ok, "first_oom_batch": bad, "capped_at": cap if bad is None else None, "probes": tried}


def profile(task: str, args, device: torch.device, deadline: Deadline) -> dict:
    model, optimizer, config, train_flops = build(task, args, device)
    result: dict = {
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "train_gflops_per_image": round(train_flops / 1e9, 2),
        "attn_implementation": model.config._attn_implementation,
    }
    modes = ["eager"] + (["compiled"] if args.compile else [])
    for mode in modes:
        if not deadline.allows(60 if mode == "compiled" else 20, f"{task} {mode}"):
            continue
        step = make_step(model, optimizer, task, config.num_labels, device, args.image_size, mode == "compiled")
        runs = {}
        for batch in args.batch_sizes:
            if not deadline.allows(15, f"{task} {mode} batch {batch}"):
                break
            try:
                runs[str(batch)] = throughput(step, batch, args, device)
            except torch.OutOfMemoryError:
                free(device)
                runs[str(batch)] = {"batch_size": batch, "oom": True}
                continue
            flops_per_s = train_flops * runs[str(batch)]["images_per_s"]
            runs[str(batch)]["tflops_per_s"] = round(flops_per_s / 1e12, 2)
            runs[str(batch)]["mfu"] = round(flops_per_s / (args.peak_tflops * 1e12), 4)
        result[mode] = runs
        if mode == "eager":
            result["search"] = largest_batch(step, args.search_start, args.search_cap, device, deadline, args.probes)
    del model, optimizer
    free(device)
    return result


def best_rate(result: dict) -> float | None:
    rates = [
        run["images_per_s"] for mode in ("eager", "compiled") for run in result.get(mode, {}).values() if "images_per_s" in run
    ]  # fmt: skip
    return max(rates) if rates else None


def input_handoff(args, device: torch.device, batch: int = 256, repeats: int = 20) -> dict:
    """What a training step pays for its input on the device: the host-to-device copy of a pinned batch as float32
    (normalised in the loader) against uint8 (``PixelCollator(on_device=True)``; RGB and grayscale), and the
    trainer's normalisation with erasing boxes for half of the faces (``PixelNormalizer`` on the device); median
    ms per batch of ``batch`` faces."""
    from modeling.models.sizes import IMAGENET_MEAN, IMAGENET_STD
    from modeling.training.pixels import PixelNormalizer

    size, pin = args.image_size, device.type == "cuda"

    def timed(fn) -> float:
        fn()
        sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync(device)
            times.append((time.perf_counter() - start) * 1000)
        return round(sorted(times)[len(times) // 2], 3)

    batches = {
        "float32_rgb": torch.zeros(batch, 3, size, size),
        "uint8_rgb": torch.zeros(batch, 3, size, size, dtype=torch.uint8),
        "uint8_gray": torch.zeros(batch, 1, size, size, dtype=torch.uint8),
    }
    if pin:  # as the Trainer's loader pins them
        batches = {k: v.pin_memory() for k, v in batches.items()}
    out: dict = {
        "batch_size": batch,
        "copy_ms": {k: timed(lambda v=v: v.to(device, non_blocking=True)) for k, v in batches.items()},
    }
    normalizer = PixelNormalizer(IMAGENET_MEAN, IMAGENET_STD)
    pixels = torch.randint(0, 256, (batch, 1, size, size), dtype=torch.uint8, device=device)
    erase = torch.zeros(batch, 4, dtype=torch.int64)
    erase[: batch // 2] = torch.tensor([size // 4, size // 4, size // 3, size // 3])
    erase = erase.to(device)
    out["normalize_ms"] = timed(lambda: normalizer(pixels, erase))
    return out


def projections(mae: dict, finetune: dict) -> dict:
    out: dict = {}
    rate = best_rate(mae)
    if rate:
        images = PRETRAIN["faces"] * PRETRAIN["epochs"]
        out["pretrain_300_epochs_affectnet"] = {"images": images, "hours": round(images / rate / 3600, 2)}
    rate = best_rate(finetune)
    if rate:
        for name, spec in FINETUNE.items():
            images = spec["faces"] * spec["epochs"]
            out[f"finetune_{name}"] = {**spec, "hours": round(images / rate / 3600, 2)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="base")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--patch_size", type=int, default=16)
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[128, 512], help="Throughput batches (128: configs)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="Also torch.compile (default: on a GPU)"
    )
    p.add_argument("--search_start", type=int, default=256)
    p.add_argument("--search_cap", type=int, default=4096)
    p.add_argument("--probes", type=int, default=8, help="Most OOM-search steps per task")
    p.add_argument("--peak_tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    p.add_argument("--budget_s", type=float, default=420.0, help="Phases that would overrun are skipped")
    p.add_argument("--tiny", "--dry_run", action="store_true", help="CPU, tiny model, tiny batches: a smoke test")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        args.image_size, args.patch_size, args.batch_sizes = 32, 8, [4]
        args.steps, args.warmup = 2, 1
        args.search_start, args.search_cap, args.probes = 4, 16, 3
    elif device.type != "cuda":
        p.error("no CUDA device: run with --tiny for a CPU dry run")
    if args.compile is None:
        args.compile = not args.tiny
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    deadline = Deadline(args.budget_s)
    start = time.perf_counter()
    torch.manual_seed(0)
    handoff = (
        input_handoff(args, device, batch=8 if args.tiny else 256) if deadline.allows(15, "input handoff") else None
    )
    free(device)  # the hand-off's tensors died with it; give their cached blocks back before the profiles
    mae = profile("mae", args, device, deadline)
    finetune = profile("finetune", args, device, deadline)
    out = {
        "benchmark": "gpu",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.machine()}, dry run)",
        "model": "tiny (hidden 32, 2 layers), 32 px, patch 8"
        if args.tiny
        else f"{args.size}, {args.image_size} px, patch {args.patch_size}",  # fmt: skip
        "torch": torch.__version__,
        "precision": "bf16 autocast, fp32 weights, fused AdamW" if device.type == "cuda" else "bf16 autocast (CPU)",
        "peak_tflops_used": args.peak_tflops,
        "flops": "analytic; training = 3 x forward (see the module docstring)",
        "mae_pretraining": mae,
        "finetuning": finetune,
        "projections": projections(mae, finetune),
        "input_handoff": handoff,
        "skipped_for_time": deadline.skipped,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
