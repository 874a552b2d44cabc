"""Trains the convolutional teacher (:mod:`modeling.models.teacher`) that ``run_finetune.py --teacher_dir`` distils
into a ViT. A training aid: the shipped model stays a plain ViT.

    python -m modeling.training.teacher --data_dir data/FERPlus --output_dir outputs/teacher_r18

FER+ only, as the ViT recipe trains: the vote distributions (``probability``) as targets, the square-root weighted
sampler, the paper's regular augmentation through the package's fast input path (the ViT's own), SGD with Nesterov
momentum and a cosine schedule after one warm-up epoch (the usual ResNet recipe), bf16 autocast where the CPU has
bf16 units. After every epoch the teacher is scored on the validation split (majority protocol) and the best epoch
is kept in ``OUTPUT_DIR`` (``teacher.safetensors``, ``teacher.json``); the test split is never read. Every epoch
also writes ``last.pt`` (model, optimizer, epoch): rerunning the same command resumes from it. ``history.json`` keeps
every epoch's validation figures and times, ``all_results.json`` the selected epoch's.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..cli import HelpFormatter, plain_text, require_dir, run_main
from ..models.teacher import FaceResNet, save_teacher

logger = logging.getLogger(__name__)

RESUME_FILE = "last.pt"
HISTORY_FILE = "history.json"


def cosine_lr(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up over ``warmup`` steps to ``peak``, then a cosine to 0 at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m modeling.training.teacher",
        description=plain_text(__doc__.split("\n\n")[0]),
        formatter_class=HelpFormatter,  # argparse's own added "(default: None)" after a help that gives the default
    )
    p.add_argument("--data_dir", required=True, help="The official FER+ folders (FER2013Train/, FER2013Valid/, ...)")
    p.add_argument("--cache_dir", default=None, help="Prepared datasets (default: the datasets library's cache)")
    p.add_argument("--output_dir", required=True, help="Folder for the selected teacher and the resume checkpoint")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=0.05, help="Peak SGD learning rate at this batch size")
    p.add_argument("--weight_decay", type=float, default=5e-4, help="On weights; none on norms and biases")
    p.add_argument("--warmup_epochs", type=float, default=1.0)
    p.add_argument("--image_size", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_workers", type=int, default=1, help="DataLoader workers for the augmentation")
    p.add_argument("--max_steps_per_epoch", type=int, default=None, help="Cut every epoch short (smoke runs)")
    p.add_argument("--max_eval_samples", type=int, default=None, help="Score only the first N validation faces")
    return p.parse_args(argv)


def evaluate(model, loader, labels: np.ndarray, num_labels: int, bf16: bool) -> dict[str, float]:
    """Validation accuracy, balanced accuracy and macro F1, plain and with the mirrored face averaged in."""
    from ..evaluation.metrics import fer_metrics

    model.eval()
    plain, flipped = [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for batch in loader:
            x = batch["pixel_values"].contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            plain.append(logits.argmax(-1).numpy())
            flipped.append((logits + model(x.flip(-1)).float()).argmax(-1).numpy())
    out = {}
    for suffix, preds in (("", plain), ("_flip", flipped)):
        m = fer_metrics(np.concatenate(preds), labels, num_labels)
        out.update({f"{k}{suffix}": float(m[k]) for k in ("accuracy", "balanced_accuracy", "macro_f1")})
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    require_dir("--data_dir", args.data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..data import load_fer_dataset
    from ..models.sizes import IMAGENET_MEAN, IMAGENET_STD
    from ..precision import native_bf16_units
    from .fast_input import PixelCollator, fast_transforms, undecoded
    from .losses import soft_target_cross_entropy
    from .sampling import EpochSeededWeightedSampler, class_weights

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    train = load_fer_dataset("ferplus", args.data_dir, config="probability", cache_dir=args.cache_dir)["train"]
    val = load_fer_dataset("ferplus", args.data_dir, config="majority", cache_dir=args.cache_dir)["validation"]
    if args.max_eval_samples is not None:
        val = val.select(range(min(args.max_eval_samples, len(val))))
    names = list(train.features["label"].names)
    train_tf, eval_tf = fast_transforms("regular", args.image_size)
    sampler = EpochSeededWeightedSampler(class_weights(np.asarray(train["label"]), "sqrt"), len(train), args.seed)
    val_labels = np.asarray(val["label"])
    collate = PixelCollator(IMAGENET_MEAN, IMAGENET_STD)
    loader = torch.utils.data.DataLoader(
        undecoded(train).with_transform(train_tf.with_options("soft_label")),
        batch_size=args.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=args.num_workers,
        drop_last=True,
        persistent_workers=args.num_workers > 0,
    )
    val_loader = torch.utils.data.DataLoader(
        undecoded(val).with_transform(eval_tf), batch_size=256, collate_fn=collate
    )

    model = FaceResNet(len(names)).to(memory_format=torch.channels_last)
    params = list(model.named_parameters())
    optimizer = torch.optim.SGD(
        [
            {"params": [p for _, p in params if p.ndim > 1], "weight_decay": args.weight_decay},
            {"params": [p for _, p in params if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=args.learning_rate,
        momentum=0.9,
        nesterov=True,
    )
    steps = len(loader) if args.max_steps_per_epoch is None else min(len(loader), args.max_steps_per_epoch)
    total, warmup = steps * args.epochs, int(args.warmup_epochs * steps)
    units = native_bf16_units()
    bf16 = bool(units)
    logger.info(
        "Teacher: ResNet-18 for %d px faces, %d epochs of %d steps, bf16 autocast %s",
        args.image_size,
        args.epochs,
        steps,
        bf16,
    )

    start, best, history = 0, -1.0, []
    if (out / RESUME_FILE).is_file():
        state = torch.load(out / RESUME_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
        history = json.loads((out / HISTORY_FILE).read_text())[:start]
        best = max(row["eval_accuracy"] for row in history)
        logger.info("Resumed after epoch %d (best validation accuracy %.4f)", start, best)
    for epoch in range(start, args.epochs):
        model.train()
        sampler.set_epoch(epoch)
        wall, cpu = time.perf_counter(), time.process_time()
        seen, loss_sum = 0, 0.0
        for i, batch in enumerate(loader):
            if i >= steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(epoch * steps + i, total, warmup, args.learning_rate)
            x = batch["pixel_values"].contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
            loss = soft_target_cross_entropy(logits, batch["labels"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += x.shape[0]
            loss_sum += loss.item() * x.shape[0]
            if i % 50 == 0:
                logger.info("epoch %d step %d/%d loss %.4f", epoch + 1, i, steps, loss.item())
        train_s = time.perf_counter() - wall
        metrics = evaluate(model, val_loader, val_labels, len(names), bf16)
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1, seen),
            **{f"eval_{k}": v for k, v in metrics.items()},
            "train_images_per_s": seen / train_s,
            "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu,
        }
        history.append(row)
        logger.info("%s", json.dumps(row))
        if metrics["accuracy"] > best:
            best = metrics["accuracy"]
            save_teacher(model, out, names, args.image_size, {"selected_epoch": epoch + 1, "eval": metrics})
        (out / HISTORY_FILE).write_text(json.dumps(history, indent=1) + "\n")
        tmp = out / (RESUME_FILE + ".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1}, tmp)
        os.replace(tmp, out / RESUME_FILE)  # a kill mid-write leaves the previous epoch's checkpoint whole
    selected = max(history, key=lambda r: r["eval_accuracy"])  # the first of equals, as the saving above
    result = {
        "best_eval_accuracy": best,
        **{f"eval_{k}": selected[f"eval_{k}"] for k in ("accuracy", "balanced_accuracy", "macro_f1")},
        "selected_epoch": selected["epoch"],
        "epoch": len(history),
        "train_runtime": sum(r["wall_s"] for r in history),
        "train_cpu_seconds": sum(r["cpu_s"] for r in history),
        "train_samples_per_second": float(np.median([r["train_images_per_s"] for r in history])),
        "precision": f"bf16 autocast on CPU (bf16 units: {', '.join(units)})" if bf16 else "float32",
        "output_dir": str(out),
    }
    (out / "all_results.json").write_text(json.dumps(result, indent=2) + "\n")
    logger.info("Teacher selected on validation: epoch %d, accuracy %.4f", selected["epoch"], best)
    return result


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m modeling.training.teacher"))
