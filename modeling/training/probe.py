"""Linear probing: how much expression information a frozen encoder's features carry, before any fine-tuning.

A cheap diagnostic of a pretraining run (the MAE paper reports it beside fine-tuning): the encoder is frozen,
every face is embedded once, and a linear softmax classifier is trained on the train features and scored on
the validation features. The same probe on a randomly initialised encoder of the same shape and on the raw
pixels gives the two baselines a pretraining run has to beat.

Features are the final-layernormed [CLS] token concatenated with the mean of the patch tokens; they are
standardised with the train statistics; the probe is full-batch AdamW on the cross-entropy (deterministic
given the seed). The image pipeline is the evaluation pipeline of ``run_finetune.py`` (resize, normalise).

    python -m modeling.training.probe outputs/mae --dataset_name ferplus --data_dir data/FERPlus --random --pixels
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import ViTForImageClassification

from ..cli import require_model, run_main
from ..evaluation.metrics import fer_metrics
from .fast_input import FaceBatchTransform, PixelCollator, undecoded

logger = logging.getLogger(__name__)


@dataclass
class ProbeResult:
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    feature_dim: int
    train_faces: int
    eval_faces: int


def face_batches(
    dataset: datasets.Dataset, image_size: int, mean: Sequence[float], std: Sequence[float], batch_size: int = 256
) -> DataLoader:
    """Batches of normalised ``pixel_values`` and ``labels`` in dataset order (evaluation transform)."""
    faces = undecoded(dataset).with_transform(FaceBatchTransform(image_size, "none", label_column="label"))
    return DataLoader(faces, batch_size=batch_size, shuffle=False, collate_fn=PixelCollator(mean, std))


@torch.no_grad()
def encoder_features(
    model: ViTForImageClassification | None, batches: DataLoader, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([N, 2 * hidden], [N])`` on the CPU: [CLS] and mean patch token per face; ``model=None``: the raw
    pixels (first channel, flattened: FER faces are grey). ``device``: where the encoder runs."""
    features, labels = [], []
    if model is not None:
        model.eval().to(device)
    for batch in batches:
        pixels = batch["pixel_values"]
        if model is None:
            features.append(pixels[:, 0].flatten(1))
        else:
            hidden = model.vit(pixel_values=pixels.to(device)).last_hidden_state.float().cpu()
            features.append(torch.cat([hidden[:, 0], hidden[:, 1:].mean(1)], dim=-1))
        labels.append(batch["labels"])
    return torch.cat(features).float(), torch.cat(labels)


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    eval_x: torch.Tensor,
    eval_y: torch.Tensor,
    num_classes: int,
    steps: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> ProbeResult:
    """Trains a linear softmax classifier on standardised ``train_x`` and scores it on ``eval_x``."""
    if len(train_x) != len(train_y) or len(eval_x) != len(eval_y):
        raise ValueError("features and labels differ in length")
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, eval_x = (train_x - mean) / std, (eval_x - mean) / std
    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(train_x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.01)
        head.bias.zero_()
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(head(train_x), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predictions = head(eval_x).argmax(-1)
    scores = fer_metrics(predictions.numpy(), eval_y.numpy(), num_classes)
    return ProbeResult(
        accuracy=scores["accuracy"],
        balanced_accuracy=scores["balanced_accuracy"],
        macro_f1=scores["macro_f1"],
        feature_dim=train_x.shape[1],
        train_faces=len(train_x),
        eval_faces=len(eval_x),
    )


def probe_encoders(
    encoders: dict[str, ViTForImageClassification | None],
    train: datasets.Dataset,
    evaluation: datasets.Dataset,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, ProbeResult]:
    """One probe per named encoder (None: raw pixels), all on the same faces; encoders run on ``device``."""
    train_batches = face_batches(train, image_size, mean, std)
    eval_batches = face_batches(evaluation, image_size, mean, std)
    results = {}
    for name, model in encoders.items():
        train_x, train_y = encoder_features(model, train_batches, device)
        eval_x, eval_y = encoder_features(model, eval_batches, device)
        results[name] = linear_probe(train_x, train_y, eval_x, eval_y, num_classes, seed=seed)
        logger.info("probe %s: %.4f accuracy on %d faces", name, results[name].accuracy, len(eval_x))
    return results


def probe_model(
    source: str,
    train: datasets.Dataset,
    evaluation: datasets.Dataset,
    name: str | None = None,
    random_twin: bool = True,
    pixels: bool = True,
    seed: int = 0,
) -> dict[str, ProbeResult]:
    """Probes ``source`` (an MAE or ViT classifier, converted with
    :func:`~modeling.training.finetuning.load_classifier`) under ``name`` (default: ``source``), and optionally a
    randomly initialised twin (``random_init``) and the raw pixels (``pixels``), on the GPU when there is one."""
    from .finetuning import load_classifier, processor_for

    labels = train.features["label"].names
    model = load_classifier(source, labels)
    encoders: dict[str, ViTForImageClassification | None] = {name or source: model}
    if random_twin:
        torch.manual_seed(seed)
        encoders["random_init"] = ViTForImageClassification(model.config)
    if pixels:
        encoders["pixels"] = None
    processor = processor_for(source, model.config.image_size)
    return probe_encoders(
        encoders, train, evaluation, model.config.image_size, processor.image_mean, processor.image_std,
        len(labels), seed=seed, device="cuda" if torch.cuda.is_available() else "cpu",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, dict]:
    from ..data import load_fer_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="An MAE (run_mae.py output) or ViT classifier directory, or a Hub id")
    parser.add_argument("--dataset_name", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--dataset_config_name", default=None)
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--eval_split", default="validation", help="Never tune anything on the test split")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--random", action="store_true", help="Also probe a randomly initialised twin encoder")
    parser.add_argument("--pixels", action="store_true", help="Also probe the raw pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    require_model("", args.model)  # a missing local folder is not taken for a Hub id
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    splits = load_fer_dataset(
        args.dataset_name, args.data_dir, config=args.dataset_config_name, cache_dir=args.cache_dir
    )
    if args.eval_split not in splits:
        raise SystemExit(f"{args.data_dir}: no {args.eval_split!r} split; have {sorted(splits)}")
    train = splits["train"]
    if args.max_train_samples:
        train = train.shuffle(seed=args.seed).select(range(min(args.max_train_samples, len(train))))
    results = probe_model(
        args.model, train, splits[args.eval_split], random_twin=args.random, pixels=args.pixels, seed=args.seed
    )
    report = {name: vars(result) for name, result in results.items()}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m modeling.training.probe"))
