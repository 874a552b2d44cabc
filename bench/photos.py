#!/usr/bin/env python
"""A model on real photos as a user meets it: ``fer-predict`` with face detection, boxes and labels drawn.

The photos are public-domain portraits that Python packages ship: ``astronaut`` (NASA's portrait of Eileen
Collins, colour, 512x512, from scikit-image's ``skimage.data``) and ``grace_hopper`` (the U.S. Navy portrait of
Grace Hopper, colour, 512x600, from matplotlib's sample data). They are written to a temporary folder and given to ``fer-predict`` exactly as a user's files would be (Haar detection,
the crop margin, the gray conversion of a FER+ model), so the figure shows the shipped pipeline end to end.

    python bench/photos.py                         # the shipped model (modeling.default_model_dir())
    python bench/photos.py --model outputs/run --out /tmp/photos

Writes OUT/<photo>.png (annotated copies) and OUT/faces.jsonl (one line per face: box, label, scores), and prints
a JSON summary (faces found per photo, labels, seconds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "grace_hopper")


def write_photos(folder: Path) -> list[Path]:
    """The scikit-image photos as PNG files in ``folder``."""
    try:
        from skimage import data
    except ImportError as err:
        raise SystemExit(
            f"bench/photos.py needs scikit-image for its photos ({err}); pip install -e '.[dev]'"
        ) from err
    import matplotlib.cbook
    from PIL import Image

    sources = {
        "astronaut": data.astronaut(),
        "grace_hopper": np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))),
    }
    paths = []
    for name in PHOTOS:
        path = folder / f"{name}.png"
        Image.fromarray(sources[name]).save(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model folder or Hub id (default: the shipped model)")
    parser.add_argument("--out", default=str(ROOT / "results" / "photos"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        photos = write_photos(Path(tmp))
        cmd = [sys.executable, "-m", "modeling.inference.fer_predict", *map(str, photos), "--annotate", str(out),
               "--output", str(out / "faces.jsonl")]  # fmt: skip
        if args.model:
            cmd += ["--model", args.model]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"fer-predict failed ({proc.returncode}):\n{proc.stderr}")
    faces = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    for face in faces:  # the temporary folder's path means nothing to a reader, nor OUT's
        face["file"] = Path(face["file"]).name
        face["annotated"] = Path(face["annotated"]).name
    (out / "faces.jsonl").write_text("".join(json.dumps(f) + "\n" for f in faces))
    summary = {
        "command": "fer-predict "
        + " ".join(f"{p}.png" for p in PHOTOS)
        + " --annotate OUT --output OUT/faces.jsonl"
        + (f" --model {args.model}" if args.model else ""),
        "model": args.model or "the shipped model (modeling.default_model_dir())",
        "photos": {
            name: [
                {"box": f["box"], "label": f["label"], "score": round(f["score"], 4)}
                for f in faces
                if f["file"] == f"{name}.png"
            ]
            for name in PHOTOS
        },
        "whole_process_seconds": round(seconds, 2),
        "stderr_tail": proc.stderr.strip().splitlines()[-3:],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
