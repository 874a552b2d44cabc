"""Images/s of the fine-tuning and MAE pretraining train loaders against the transformers example-script pipeline.

    python bench/input_pipeline.py --data_dir /tmp/fer/official --cache_dir /tmp/fer_cache   # FER+ official layout
    python bench/input_pipeline.py --tiny                                                     # synthetic, seconds

Three pipelines per task, each a ``torch.utils.data.DataLoader`` over the prepared ``datasets.Dataset`` (batch 64,
shuffled, faces 48 px -> ``--image_size``), as the Trainer builds it:

- ``example``: what the transformers example scripts do (run_image_classification.py / run_mae.py): a per-sample
  PIL ``set_transform`` with a torchvision ``Compose`` (RandomResizedCrop, flip, ToTensor, Normalize) and a
  stacking collator;
- ``reference``: this project's :mod:`modeling.training.transforms` pipelines (``regular`` augmentation; MAE
  pretraining transform) applied per sample, as run_finetune.py / run_mae.py did before the fast path;
- ``fast``: :mod:`modeling.training.fast_input` (image bytes decoded by OpenCV, grayscale kept one channel, uint8 at
  the source resolution, batched, resized last, normalised in the collator): what the scripts use on CPU;
- ``fast_uint8``: the same faces handed over as uint8 (``PixelCollator(on_device=True)``), normalised and erased
  by the trainer on the training device: what the scripts use on an accelerator. Its normalisation, timed on
  this CPU, is reported beside it (``cpu_normalize_ms_per_batch``), with the rate the loader and a CPU
  normalisation would reach together; on a GPU that step costs next to nothing (``bench/gpu.py``).

Each is timed at ``num_workers`` 0 (one process, one torch thread: the per-worker rate) and 2. A run is
``--batches`` batches after ``--warmup`` batches; the figure is the median images/s of ``--repeats`` runs, every
pipeline measured in the same process, interleaved, so that load from other jobs hits them alike. Prints one JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms as T

ROOT = Path(__file__).resolve().parents[1]


def example_transforms(image_size: int, mean, std, task: str):
    """The example scripts' per-sample PIL pipeline, restated (not copied) from their documented behaviour."""
    if task == "finetune":  # run_image_classification.py train_transforms
        steps = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
    else:  # run_mae.py: RGB, RandomResizedCrop(scale 0.2-1, bicubic), flip
        steps = [
            T.RandomResizedCrop(image_size, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
        ]
    compose = T.Compose([*steps, T.ToTensor(), T.Normalize(mean=mean, std=std)])

    def fn(batch):
        out = {"pixel_values": [compose(image.convert("RGB")) for image in batch["image"]]}
        if task == "finetune":
            out["labels"] = batch["label"]
        return out

    return fn


def example_collate(examples):
    batch = {"pixel_values": torch.stack([e["pixel_values"] for e in examples])}
    if "labels" in examples[0]:
        batch["labels"] = torch.tensor([e["labels"] for e in examples])
    return batch


def reference_transforms(image_size: int, mean, std, task: str):
    from modeling.training.finetuning import collate_classification
    from modeling.training.pretraining import collate_pixels
    from modeling.training.transforms import build_mae_pretrain_transform, build_train_transform

    if task == "finetune":
        tf = build_train_transform("regular", image_size, mean, std)
    else:
        tf = build_mae_pretrain_transform(image_size, mean, std)

    def fn(batch):
        out = {"pixel_values": [tf(image) for image in batch["image"]]}
        if task == "finetune":
            out["labels"] = batch["label"]
        return out

    return fn, collate_classification if task == "finetune" else collate_pixels


def fast_transforms(image_size: int, mean, std, task: str, on_device: bool = False):
    from modeling.training.fast_input import FaceBatchTransform, PixelCollator, undecoded

    if task == "finetune":
        tf = FaceBatchTransform(image_size, "regular", label_column="label")
    else:
        tf = FaceBatchTransform(image_size, "mae_pretrain", label_column=None)
    return tf, PixelCollator(mean, std, on_device=on_device), undecoded


def pipelines(image_size: int, task: str):
    from modeling.models.sizes import IMAGENET_MEAN, IMAGENET_STD

    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    return {
        "example": (example_transforms(image_size, mean, std, task), example_collate, None),
        "reference": (*reference_transforms(image_size, mean, std, task), None),
        "fast": fast_transforms(image_size, mean, std, task),
        "fast_uint8": fast_transforms(image_size, mean, std, task, on_device=True),
    }


def synthetic_faces(n: int, size: int = 48):
    """``n`` random grayscale PNG faces in a ``datasets.Dataset`` stored as the FER+ builder stores them."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(buffer, format="PNG")
        rows.append({"image": {"bytes": buffer.getvalue(), "path": None}, "label": i % 8})
    features = datasets.Features({"image": datasets.Image(mode="RGB"), "label": datasets.ClassLabel(num_classes=8)})
    return datasets.Dataset.from_list(rows, features=features)


class Loader:
    """A shuffled DataLoader as the Trainer builds it; each timed run starts a fresh iterator (and workers)."""

    def __init__(self, dataset, transform, collate, batch_size: int, num_workers: int, seed: int):
        self.loader = torch.utils.data.DataLoader(
            dataset.with_transform(transform),
            batch_size=batch_size,
            shuffle=True,
            num_workers=num_workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(seed),
            drop_last=True,
        )

    def rate(self, warmup: int, batches: int, shape: tuple[int, ...]) -> float:
        """Images/s over ``batches`` batches after ``warmup`` untimed ones (worker start-up, first fetches).

        A fresh iterator per run, and none left open between runs: idle workers would fill their prefetch
        queues in the background and flatter the next timed run."""
        iterator = iter(self.loader)
        for _ in range(warmup):
            pixels = next(iterator)["pixel_values"]
            got = tuple(pixels.shape)
            if (
                got[0] != shape[0]
                or got[2:] != shape[2:]
                or got[1] not in ((1, 3) if pixels.dtype == torch.uint8 else (3,))
            ):
                raise RuntimeError(f"expected batches of shape {shape}, got {got} {pixels.dtype}")
        images, start = 0, time.perf_counter()
        for _ in range(batches):
            images += next(iterator)["pixel_values"].shape[0]
        elapsed = time.perf_counter() - start
        del iterator
        return images / elapsed


def measure(dataset, args) -> dict:
    results: dict = {}
    for task in ("finetune", "mae"):
        for workers in (0, 2):
            loaders = {
                name: Loader(
                    dataset if prepare is None else prepare(dataset), tf, collate, args.batch_size, workers, args.seed
                )  # fmt: skip
                for name, (tf, collate, prepare) in pipelines(args.image_size, task).items()
            }
            shape = (args.batch_size, 3, args.image_size, args.image_size)
            runs: dict[str, list[float]] = {name: [] for name in loaders}
            for _ in range(args.repeats):  # interleaved, so that background load hits every pipeline alike
                for name, loader in loaders.items():
                    runs[name].append(loader.rate(args.warmup, args.batches, shape))
            key = f"{task}_workers{workers}"
            results[key] = {f"{name}_images_per_s": round(statistics.median(r), 1) for name, r in runs.items()}
            results[key]["runs"] = {name: [round(x, 1) for x in r] for name, r in runs.items()}
            med = {name: statistics.median(r) for name, r in runs.items()}
            results[key]["fast_over_example"] = round(med["fast"] / med["example"], 2)
            results[key]["fast_over_reference"] = round(med["fast"] / med["reference"], 2)
            results[key]["reference_over_example"] = round(med["reference"] / med["example"], 2)
            results[key]["fast_uint8_over_example"] = round(med["fast_uint8"] / med["example"], 2)
            if workers == 0:
                ms = cpu_normalize_ms(args.batch_size, args.image_size, task, args.repeats)
                results[key]["cpu_normalize_ms_per_batch"] = round(ms, 2)
                both = 1.0 / (1.0 / med["fast_uint8"] + ms / 1000 / args.batch_size)
                results[key]["fast_uint8_plus_cpu_normalize_images_per_s"] = round(both, 1)
            del loaders
    return results


def cpu_normalize_ms(batch_size: int, image_size: int, task: str, repeats: int) -> float:
    """Median ms of the trainer-side normalisation of one uint8 grayscale batch on this CPU (boxes for half of the
    faces in fine-tuning, as ``regular``'s erasing p), into a fresh tensor as a training step would."""
    from modeling.models.sizes import IMAGENET_MEAN, IMAGENET_STD
    from modeling.training.pixels import PixelNormalizer

    normalizer = PixelNormalizer(IMAGENET_MEAN, IMAGENET_STD)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (batch_size, 1, image_size, image_size), dtype=torch.uint8, generator=g)
    erase = None
    if task == "finetune":
        erase = torch.zeros(batch_size, 4, dtype=torch.int64)
        erase[: batch_size // 2] = torch.tensor([image_size // 4, image_size // 4, image_size // 3, image_size // 3])
    times = []
    for _ in range(max(5, repeats)):
        start = time.perf_counter()
        normalizer(pixels, erase)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=None, help="FER+ in the official layout (FER2013Train/ + label.csv ...)")
    p.add_argument("--cache_dir", default=None, help="Where the prepared FER+ dataset is cached")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--batches", type=int, default=8, help="Batches per timed run")
    p.add_argument("--warmup", type=int, default=2, help="Batches before timing (workers start here)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="Synthetic 48 px faces, 32 px output, a few small batches")
    args = p.parse_args(argv)
    if args.tiny:
        args.image_size, args.batch_size, args.batches, args.warmup, args.repeats = 32, 8, 2, 1, 2
        dataset, source = synthetic_faces(64), "synthetic 48px gray PNG faces"
    else:
        if args.data_dir is None:
            p.error("--data_dir (FER+ official layout) is required unless --tiny")
        from modeling.data import load_fer_dataset

        dataset = load_fer_dataset("ferplus", args.data_dir, cache_dir=args.cache_dir)["train"]
        source = f"FER+ train ({len(dataset)} faces, 48px) from {args.data_dir}"
    # The per-worker figure is one process with one torch thread, as a DataLoader worker runs.
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = measure(dataset, args)
    out = {
        "benchmark": "input_pipeline",
        "data": source,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "batches_per_run": args.batches,
        "repeats": args.repeats,
        "torch_threads": 1,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread, {_cpu_count()} CPUs",
        "torch": torch.__version__,
        **results,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
