"""Seconds per training step of FERTrainer against a plain ``transformers.Trainer`` on the same model and batches.

    python bench/trainer_overhead.py            # a small ViT (hidden 64, 4 layers, 64 px, patch 8), batch 32
    python bench/trainer_overhead.py --tiny     # hidden 32, 2 layers, 32 px: seconds, for the test

FERTrainer runs with everything it adds on: the epoch-seeded weighted sampler ('sqrt' class weights), layer-wise
lr decay 0.65 (AdamW over per-layer parameter groups) and the soft-target cross-entropy on [N, C] soft labels.
The plain Trainer gets the same initial weights, the same images with integer labels, its default sampler,
AdamW and cross-entropy. A run times each step (``on_step_end`` to ``on_step_end``) after ``--warmup`` steps;
the figure is the median step time of ``--repeats`` runs per trainer, the two interleaved in one process.
Prints one JSON object; the ratio is FER / plain (target: <= 1.05).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, ViTConfig, ViTForImageClassification
from transformers.trainer_callback import PrinterCallback, ProgressCallback


class Faces(torch.utils.data.Dataset):
    """Random images whose class is in their brightness; ``soft`` gives smoothed one-hot [C] float targets."""

    def __init__(self, n: int, image_size: int, num_classes: int, soft: bool):
        g = torch.Generator().manual_seed(0)
        self.labels = torch.randint(0, num_classes, (n,), generator=g)
        self.images = torch.randn(n, 3, image_size, image_size, generator=g) + self.labels.view(-1, 1, 1, 1)
        self.targets = torch.nn.functional.one_hot(self.labels, num_classes).float() * 0.9 + 0.1 / num_classes
        self.soft = soft

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.images[i], "labels": self.targets[i] if self.soft else self.labels[i]}


class StepTimer(TrainerCallback):
    def __init__(self):
        self.stamps: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append(time.perf_counter())


def step_times(kind: str, config: ViTConfig, state: dict, args: argparse.Namespace, out_dir: str) -> list[float]:
    from modeling.training.sampling import class_weights
    from modeling.training.trainer import FERTrainer

    model = ViTForImageClassification(config)
    model.load_state_dict(state)
    data = Faces(args.batch_size * (args.steps + args.warmup), config.image_size, config.num_labels, kind == "fer")
    training_args = TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps + args.warmup,
        learning_rate=1e-4,
        weight_decay=0.05,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    timer = StepTimer()
    common = {"model": model, "args": training_args, "train_dataset": data, "callbacks": [timer]}
    if kind == "fer":
        weights = class_weights(data.labels.numpy(), "sqrt")
        trainer = FERTrainer(**common, sample_weights=weights, layer_decay=0.65)
    else:
        trainer = Trainer(**common)
    for callback in (PrinterCallback, ProgressCallback):  # stdout carries the JSON only
        trainer.remove_callback(callback)
    trainer.train()
    stamps = timer.stamps[args.warmup - 1 :]
    return [b - a for a, b in zip(stamps, stamps[1:])]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden_size", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--patch_size", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=30, help="Timed steps per run")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args(argv)
    if args.tiny:
        args.hidden_size, args.layers, args.image_size, args.batch_size = 32, 2, 32, 8
        args.steps, args.warmup, args.repeats = 4, 2, 2
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    config = ViTConfig(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden_size // 32),
        intermediate_size=4 * args.hidden_size,
        image_size=args.image_size,
        patch_size=args.patch_size,
        num_labels=8,
    )
    torch.manual_seed(0)
    state = ViTForImageClassification(config).state_dict()
    runs: dict[str, list[float]] = {"plain": [], "fer": []}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for kind in runs:  # interleaved: background load hits both alike
                runs[kind].append(statistics.median(step_times(kind, config, state, args, tmp)))
    plain, fer = statistics.median(runs["plain"]), statistics.median(runs["fer"])
    out = {
        "benchmark": "trainer_overhead",
        "model": f"ViT hidden {args.hidden_size}, {args.layers} layers, {args.image_size}px, patch {args.patch_size}",
        "batch_size": args.batch_size,
        "steps_per_run": args.steps,
        "repeats": args.repeats,
        "torch_threads": args.threads,
        "machine": f"{platform.machine()}, torch {torch.__version__}",
        "plain_trainer_s_per_step": round(plain, 5),
        "fer_trainer_s_per_step": round(fer, 5),
        "fer_over_plain": round(fer / plain, 3),
        "overhead_percent": round(100 * (fer / plain - 1), 1),
        "runs_s_per_step": {k: [round(x, 5) for x in v] for k, v in runs.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
