#!/usr/bin/env python
"""Models compared on FER+ faces made to look like detector crops of photos: larger, blurred, JPEG'd, darker.

    python experiments/photo_like.py modeling/default_model OTHER_MODEL --data_dir /data/FERPlus \
        --output results/photo_like.json

``bench/photos.py`` shows a model on two real photos, which carry no labels. This gives the same kind of input
with labels: every face of a FER+ split (majority rule of ``label.csv``, ``experiments/score_independently.py``),
scored as it is and after each change a photo brings, alone:

- ``larger``: upsampled 4x (192 px, bicubic), a face as a detector crops it from a photo of some size; the
  model's processor then shrinks it back (antialiased), as ``fer-predict`` does;
- ``blur``: the 192 px face blurred (Gaussian, sigma 2 px at 192: a slightly soft photo);
- ``jpeg``: the 192 px face saved as JPEG at quality 30;
- ``dark`` / ``bright``: the 48 px face's intensities times 0.5 / gamma 0.6 (under- and over-exposed);
- ``low contrast``: intensities squeezed to half their range around the mean.

Through ``FERPredictor`` (fer-predict's path, float32), the FER+ validation split by default (the test split is
for the models' one score each). Prints one JSON object: accuracy and balanced accuracy per model and condition.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from score_independently import SPLIT_FOLDERS, emit, majority_labels  # noqa: E402

SCALE = 4


def _larger(face: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = face.shape
    return np.asarray(Image.fromarray(face).resize((w * SCALE, h * SCALE), Image.BICUBIC))


def _blur(face: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(_larger(face)).filter(ImageFilter.GaussianBlur(2)))


def _jpeg(face: np.ndarray) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_larger(face)).save(buffer, format="JPEG", quality=30)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))


def _levels(face: np.ndarray, fn) -> np.ndarray:
    return np.clip(np.rint(fn(face.astype(np.float64))), 0, 255).astype(np.uint8)


CONDITIONS = {
    "as is": lambda f: f,
    "larger": _larger,
    "blur": _blur,
    "jpeg": _jpeg,
    "dark": lambda f: _levels(f, lambda x: x * 0.5),
    "bright": lambda f: _levels(f, lambda x: 255 * (x / 255) ** 0.6),
    "low contrast": lambda f: _levels(f, lambda x: x.mean() + 0.5 * (x - x.mean())),
}


def load_faces(data_dir: Path, split: str, limit: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    from PIL import Image

    folder = data_dir / SPLIT_FOLDERS[split]
    kept = majority_labels(folder / "label.csv")[:limit]
    faces = []
    for name, _ in kept:
        with Image.open(folder / name) as image:
            faces.append(np.asarray(image.convert("L")))
    return faces, [label for _, label in kept]


def scores(predicted: list[str], truth: list[str]) -> dict:
    p, t = np.asarray(predicted), np.asarray(truth)
    recalls = [float((p[t == c] == c).mean()) for c in sorted(set(truth))]
    return {"accuracy": float((p == t).mean()), "balanced_accuracy": float(np.mean(recalls))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="Saved FER+ classifiers (folders)")
    parser.add_argument("--data_dir", required=True, help="The official FER+ layout")
    parser.add_argument("--split", choices=sorted(SPLIT_FOLDERS), default="valid")
    parser.add_argument("--limit", type=int, default=None, help="The first N faces only (tests)")
    parser.add_argument("--output", default=None, help="Write the JSON here too")
    args = parser.parse_args(argv)
    from modeling.inference.predictor import FERPredictor

    faces, truth = load_faces(Path(args.data_dir), args.split, args.limit)
    changed = {name: [fn(face) for face in faces] for name, fn in CONDITIONS.items()}
    report = {"split": args.split, "faces": len(faces), "conditions": list(CONDITIONS), "models": {}}
    for model in args.models:
        predictor = FERPredictor(model, device="cpu", precision="fp32")
        report["models"][model] = {
            name: scores([p["label"] for p in predictor.predict(images, batch_size=128)], truth)
            for name, images in changed.items()
        }
    return emit(report, args.output)


if __name__ == "__main__":
    sys.exit(main() and 0)
