"""Images/s and peak RSS of preparing FER+ (the official layout -> the Arrow cache ``load_fer_dataset`` reads).

    python bench/data_prep.py --data_dir /tmp/fer/official      # full FER+: 35,710 faces, 3 splits
    python bench/data_prep.py --tiny                            # a synthetic 24-face official layout

Each repeat prepares the dataset from scratch into a fresh cache folder in a child process
(``python -m`` this file ``--child``), so that its peak resident memory is the child's own
``ru_maxrss`` (``resource.getrusage(RUSAGE_CHILDREN)``), and the time includes the imports a user pays.
Prints one JSON object: median wall seconds, faces prepared, images/s (faces / median seconds, with and
without the child's start-up), and the largest peak RSS seen.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("FER2013Train", "FER2013Valid", "FER2013Test")


def write_synthetic_ferplus(root: Path, per_split: int = 8) -> Path:
    """A tiny official FER+ layout: random 48x48 gray PNGs and header-less ``label.csv`` files with votes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    index = 0
    for split in SPLITS:
        folder = root / split
        folder.mkdir(parents=True)
        lines = []
        for i in range(per_split):
            name = f"fer{index:07d}.png"
            Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8), mode="L").save(folder / name)
            votes = [0] * 10
            votes[i % 8] = 10  # a clear majority for emotion i % 8
            lines.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
            index += 1
        (folder / "label.csv").write_text("\n".join(lines) + "\n")
    return root


def child(data_dir: str, cache_dir: str) -> None:
    """Runs in the subprocess: prepare, then report the counts and the in-process seconds."""
    start = time.perf_counter()
    from modeling.data import load_fer_dataset

    imported = time.perf_counter()
    splits = load_fer_dataset("ferplus", data_dir, cache_dir=cache_dir)
    done = time.perf_counter()
    counts = {name: len(split) for name, split in splits.items()}
    print(json.dumps({"counts": counts, "import_s": imported - start, "prepare_s": done - imported}))


def run_once(data_dir: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="fer_prep_") as cache:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", "--data_dir", data_dir, "--cache_dir", cache],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"preparation failed:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["wall_s"] = wall
    # ru_maxrss of RUSAGE_CHILDREN is the largest peak of any waited-for child so far (KiB on Linux).
    report["children_max_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=None, help="FER+ in the official layout")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiny", action="store_true", help="A synthetic 24-face layout, one repeat")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cache_dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.data_dir, args.cache_dir)
        return 0
    with tempfile.TemporaryDirectory(prefix="fer_layout_") as tmp:
        if args.tiny:
            args.repeats = 1
            data_dir, source = str(write_synthetic_ferplus(Path(tmp))), "synthetic official layout, 24 faces"
        elif args.data_dir is None:
            p.error("--data_dir (FER+ official layout) is required unless --tiny")
        else:
            data_dir, source = args.data_dir, f"FER+ official layout at {args.data_dir}"
        reports = [run_once(data_dir) for _ in range(args.repeats)]
    faces = sum(reports[0]["counts"].values())
    wall = statistics.median(r["wall_s"] for r in reports)
    prepare = statistics.median(r["prepare_s"] for r in reports)
    out = {
        "benchmark": "data_prep",
        "data": source,
        "repeats": args.repeats,
        "machine": f"{platform.machine()}, python {platform.python_version()}",
        "faces_prepared": faces,
        "split_counts": reports[0]["counts"],
        "wall_s": round(wall, 2),
        "prepare_s": round(prepare, 2),
        "import_s": round(statistics.median(r["import_s"] for r in reports), 2),
        "images_per_s": round(faces / wall, 1),
        "images_per_s_excluding_startup": round(faces / prepare, 1),
        "peak_rss_mib": round(max(r["children_max_rss_mib"] for r in reports), 1),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
