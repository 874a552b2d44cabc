#!/usr/bin/env python
"""A saved classifier scored on the FER+ test split with plain transformers, none of this package's code.

    python experiments/score_independently.py modeling/default_model --data_dir /data/FERPlus \
        --output results/default_model_independent_test.json

A check of the figures ``run_finetune.py --do_predict`` reported, by a second path that shares nothing with it but
the files: ``AutoModelForImageClassification`` and ``AutoImageProcessor.from_pretrained(MODEL)``, the PNGs of the
official ``FER2013Test/`` folder read with PIL, and the majority labels computed here from its ``label.csv`` by the
FER+ paper's rule (Barsoum et al. 2016; Microsoft's FERPlus ``_process_data``): a single vote for a class is an
outlier and counts 0; a face keeps the class with more than half of the remaining votes, and is left out when no
class has that or when that class is "unknown" or "not a face". Faces are converted to gray and back to RGB when
the model's config says ``grayscale_input`` (as its card tells ``pipeline()`` users to), then given to the image
processor as they are. Accuracy, balanced accuracy (mean per-class recall) and the confusion counts, as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
SPLIT_FOLDERS = {"test": "FER2013Test", "valid": "FER2013Valid"}
VOTE_COLUMNS = (*EMOTIONS, "unknown", "NF")  # label.csv: name, face box, then these 10 vote counts


def majority_labels(label_csv: Path) -> list[tuple[str, str]]:
    """(image name, class) for each face of ``label_csv`` that has a majority emotion."""
    kept = []
    with open(label_csv, newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            if len(row) != 2 + len(VOTE_COLUMNS):
                raise ValueError(f"{label_csv}: a row of {len(row)} fields, expected {2 + len(VOTE_COLUMNS)}: {row}")
            votes = [int(v) if int(v) > 1 else 0 for v in row[2:]]
            total, top = sum(votes), max(votes)
            if total == 0 or 2 * top <= total:
                continue
            index = votes.index(top)
            if index < len(EMOTIONS):
                kept.append((row[0], EMOTIONS[index]))
    return kept


def score(model_dir: str, data_dir: Path, batch_size: int = 256, split: str = "test") -> dict:
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    gray = bool(getattr(model.config, "grayscale_input", False))
    folder = data_dir / SPLIT_FOLDERS[split]
    faces = majority_labels(folder / "label.csv")
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    truth, predicted = [], []
    for start in range(0, len(faces), batch_size):
        images = []
        for name, label in faces[start : start + batch_size]:
            with Image.open(folder / name) as image:
                image = image.convert("L").convert("RGB") if gray else image.convert("RGB")
            images.append(image)
            truth.append(names.index(label))
        with torch.inference_mode():
            logits = model(**processor(images, return_tensors="pt")).logits
        predicted.extend(logits.argmax(-1).tolist())
    truth_a, predicted_a = np.asarray(truth), np.asarray(predicted)
    confusion = np.zeros((len(names), len(names)), dtype=int)
    np.add.at(confusion, (truth_a, predicted_a), 1)
    recall = {names[i]: float(confusion[i, i] / confusion[i].sum()) for i in range(len(names)) if confusion[i].sum()}
    return {
        "model": model_dir,
        "data": f"{folder}: label.csv majority rule, PNGs via PIL",
        "path": "transformers AutoModelForImageClassification + AutoImageProcessor, float32"
        + (", faces converted to gray (grayscale_input)" if gray else ""),
        "num_faces": len(truth),
        "accuracy": float((truth_a == predicted_a).mean()),
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "per_class_recall": recall,
        "labels": names,
        "confusion": confusion.tolist(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="A saved image classifier folder (or Hub id) with the FER+ classes")
    parser.add_argument("--data_dir", required=True, help="The official FER+ layout (FER2013Test/ with label.csv)")
    parser.add_argument("--output", default=None, help="Write the JSON here too")
    parser.add_argument(
        "--split",
        choices=sorted(SPLIT_FOLDERS),
        default="test",
        help="valid: check a preprocessing change there first",
    )
    args = parser.parse_args(argv)
    folder = SPLIT_FOLDERS[args.split]
    if not (Path(args.data_dir) / folder / "label.csv").is_file():
        parser.error(f"--data_dir {args.data_dir}: no {folder}/label.csv there (the official FER+ layout)")
    report = score(args.model, Path(args.data_dir), split=args.split)
    return emit(report, args.output)


def emit(report: dict, output: str | None) -> dict:
    """Prints ``report`` as JSON (the script's output) and writes it to ``output`` too when given."""
    text = json.dumps(report, indent=1)
    if output:
        Path(output).write_text(text + "\n")
    print(text)
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)
