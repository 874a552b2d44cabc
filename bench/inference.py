"""Throughput of FERPredictor (batched torch preprocessing) against pipeline("image-classification").

    python bench/inference.py --tiny                      # tiny random model, for a quick check / test
    python bench/inference.py --size base --image_size 224  # random ViT-B/16 at 224 (a real model's cost)
    python bench/inference.py --model path/to/finetuned --device cuda

Both paths classify the same real FER+ faces (48x48 gray, from ../shared/data/ferplus
``<split>_images.npz``) with the same saved model and batch size. Prints one JSON object:
the median seconds and images/s over ``--repeats`` timed runs (after one warm-up run) of
each path, their ratio, and the label agreement of the two paths.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ferplus"


def build_random_model(out_dir: Path, size: str, image_size: int, patch_size: int, tiny: bool) -> Path:
    from transformers import ViTForImageClassification

    from modeling.labels import FERPLUS_LABELS
    from modeling.sizes import image_processor_for, vit_config

    overrides = (
        {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64} if tiny else {}
    )
    config = vit_config(
        "tiny" if tiny else size, image_size=image_size, patch_size=patch_size, labels=FERPLUS_LABELS, **overrides
    )
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(out_dir)
    image_processor_for(image_size).save_pretrained(out_dir)
    return out_dir


def timed(fn, repeats: int) -> tuple[list[float], object]:
    result = fn()  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - start)
    return runs, result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="Saved classifier directory (default: a random model, see --size)")
    p.add_argument("--tiny", action="store_true", help="Random tiny model (hidden 32, 2 layers, image 32, patch 8)")
    p.add_argument("--size", default="base", help="Preset of the random model: tiny, small, base, large")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--patch_size", type=int, default=16)
    p.add_argument("--data_dir", default=str(DEFAULT_DATA), help="FER+ folder holding <split>_images.npz")
    p.add_argument("--split", default="valid")
    p.add_argument("--num_images", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast in FERPredictor (CUDA or a bf16-capable CPU)")
    p.add_argument("--latency_repeats", type=int, default=20, help="Single-image calls timed for batch-1 latency")
    args = p.parse_args(argv)

    from PIL import Image
    from transformers import pipeline

    if args.threads:
        torch.set_num_threads(args.threads)

    from modeling.inference import FERPredictor

    with np.load(Path(args.data_dir) / f"{args.split}_images.npz") as z:
        faces = z["images"][: args.num_images].copy()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            if args.tiny:
                args.image_size, args.patch_size = 32, 8
            model_dir = build_random_model(Path(tmp), args.size, args.image_size, args.patch_size, args.tiny)
        else:
            model_dir = Path(args.model)
        predictor = FERPredictor(model_dir, device=args.device, bf16=args.bf16)
        pipe = pipeline("image-classification", model=str(model_dir), device=args.device)
        crops = list(faces)
        pil = [Image.fromarray(f) for f in faces]

        def sync():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()

        def run_batched():
            out = predictor.predict(crops, batch_size=args.batch_size)
            sync()
            return out

        def run_pipeline():
            out = pipe(pil, batch_size=args.batch_size, top_k=1)
            sync()
            return out

        batched_runs, ours = timed(run_batched, args.repeats)
        pipeline_runs, theirs = timed(run_pipeline, args.repeats)
        # Batch-1 latency: one face per call, as an interactive user would send it.
        one, one_pil = crops[:1], pil[:1]
        latency_ours, _ = timed(lambda: (predictor.predict(one, batch_size=1), sync()), args.latency_repeats)
        latency_theirs, _ = timed(lambda: (pipe(one_pil, top_k=1), sync()), args.latency_repeats)
    n = len(crops)
    agree = float(np.mean([a["label"] == b[0]["label"] for a, b in zip(ours, theirs)]))
    b_med, p_med = statistics.median(batched_runs), statistics.median(pipeline_runs)
    report = {
        "model": "tiny (random)" if args.model is None and args.tiny else (args.model or f"{args.size} (random)"),
        "image_size": predictor.size[0],
        "num_images": n,
        "source": f"FER+ {args.split} 48x48",
        "batch_size": args.batch_size,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "batched": {
            "median_s": round(b_med, 4),
            "images_per_s": round(n / b_med, 1),
            "runs_s": [round(t, 4) for t in batched_runs],
        },
        "pipeline": {
            "median_s": round(p_med, 4),
            "images_per_s": round(n / p_med, 1),
            "runs_s": [round(t, 4) for t in pipeline_runs],
        },
        "speedup_batched_over_pipeline": round(p_med / b_med, 2),
        "batch1_latency_ms": {
            "predictor": round(1000 * statistics.median(latency_ours), 2),
            "pipeline": round(1000 * statistics.median(latency_theirs), 2),
        },
        "predictor_bf16": predictor.bf16,
        "label_agreement": agree,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
