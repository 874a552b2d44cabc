#!/usr/bin/env python
"""What post-hoc logit adjustment (modeling/training/logit_adjustment.py) would do to a trained FER+ model, on
validation.

    python experiments/logit_adjustment_grid.py outputs/search_ferplus/ft10_reg_sqrt_votes --data_dir /data/FERPlus \
        --train_config probability --sampler sqrt --out results/logit_adjustment_ft10_reg_sqrt_votes.json

Scores the model (float32) on the FER+ validation split (majority protocol; the test split is never read), takes
the training prior from the training split as the run drew it (``--train_config``'s targets, ``--sampler``'s
weights), and prints one JSON object: the tau that ``run_finetune.py --logit_adjustment`` would choose and the
validation accuracy / balanced accuracy / macro F1 for every tau of the grid. The chosen tau is picked on the same
faces it is scored on, so its row is optimistic; the unadjusted row (tau 0) is not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.cli import require_dir, run_main  # noqa: E402


def validation_logits(model_dir: str, faces, batch_size: int = 256) -> np.ndarray:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from modeling.training.transforms import build_eval_transform

    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    transform = build_eval_transform(model.config.image_size, processor.image_mean, processor.image_std)
    out = []
    with torch.no_grad():
        for start in range(0, len(faces), batch_size):
            images = faces[start : start + batch_size]["image"]
            out.append(model(pixel_values=torch.stack([transform(im) for im in images])).logits.numpy())
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="experiments/logit_adjustment_grid.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("model", help="A fine-tuned FER+ model folder")
    parser.add_argument("--data_dir", required=True, help="The official FER+ layout")
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--train_config", default="majority", choices=["majority", "probability"])
    parser.add_argument("--sampler", default="none", help="The run's --weighted_sampler")
    parser.add_argument("--max_oversampling", type=float, default=3.0)
    parser.add_argument("--out", default=None, help="Also write the JSON here")
    args = parser.parse_args(argv)
    require_dir("model", args.model)
    require_dir("--data_dir", args.data_dir)

    from modeling.data import load_fer_dataset
    from modeling.training.logit_adjustment import choose_tau, training_prior
    from modeling.training.sampling import class_weights

    train = load_fer_dataset("ferplus", args.data_dir, config=args.train_config, cache_dir=args.cache_dir)["train"]
    labels = np.asarray(train["label"])
    targets = np.asarray(train["soft_label"]) if args.train_config == "probability" else labels
    weights = None if args.sampler == "none" else class_weights(labels, args.sampler, args.max_oversampling)
    prior = training_prior(targets, len(train.features["label"].names), weights)
    faces = load_fer_dataset("ferplus", args.data_dir, config="majority", cache_dir=args.cache_dir)["validation"]
    logits = validation_logits(args.model, faces)
    tau, rows = choose_tau(logits, np.asarray(faces["label"]), prior)
    result = {
        "model": args.model,
        "split": "validation (majority)",
        "faces": len(faces),
        "prior": {"from": f"{args.train_config} targets, sampler {args.sampler}", "values": prior.round(6).tolist()},
        "chosen_tau": tau,
        "grid": rows,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    sys.exit(run_main(main, "experiments/logit_adjustment_grid.py"))
