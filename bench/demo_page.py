#!/usr/bin/env python
"""The demo page as a person meets it: a photo uploaded in a real browser, the time until the labelled result shows.

    python bench/demo_page.py                          # the shipped model, skimage's astronaut photo
    python bench/demo_page.py --model outputs/run --photo me.jpg --repeats 5

Starts ``python demo/app.py`` on a free loopback port (its default model unless ``--model``), drives Debian's
Chromium with selenium (demo/browser.py; ``apt-get install -y chromium chromium-driver``), uploads the photo
``--repeats`` times in fresh page loads and times each from the upload to the page's answer. The first upload pays
the page's and the model's warm-up and is reported apart; the steady state is the median of the others. Saves a
screenshot of the last result (``OUT/demo_page.png``) and prints and writes ``OUT/demo_page.json``: the timings,
the page's message, the model, the CPU. The photo defaults to the public-domain astronaut portrait of scikit-image
(bench/photos.py), as a colour photo of ordinary size.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def load_drive():
    spec = importlib.util.spec_from_file_location("demo_browser", ROOT / "demo" / "browser.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("demo_browser", module)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model folder or Hub id (default: the page's, the shipped one)")
    parser.add_argument("--photo", default=None, help="The photo to upload (default: skimage's astronaut)")
    parser.add_argument("--repeats", type=int, default=5, help="Uploads, the first being the warm-up (>= 2)")
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS of the app (default: the page's own)"
    )
    parser.add_argument("--out", default=str(ROOT / "results" / "demo"))
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (the first upload is the warm-up)")
    drive = load_drive()
    if drive.missing():
        raise SystemExit("bench/demo_page.py: " + "; ".join(drive.missing()))
    from modeling.precision import cpu_bf16_units, cpu_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.photo:
            photo = Path(args.photo)
        else:
            from photos import write_photos

            photo = write_photos(tmp)[0]  # astronaut.png
        timings, messages = [], []
        with drive.serve(tmp / "server", model=args.model, threads=args.threads) as url:
            browser = drive.chromium(tmp / "profile")
            try:
                for _ in range(args.repeats):
                    message, seconds = drive.upload(browser, url, photo)
                    timings.append(seconds)
                    messages.append(message)
                browser.save_screenshot(str(out / "demo_page.png"))
            finally:
                browser.quit()
    result = {
        "model": args.model or "the shipped model (modeling.default_model_dir())",
        "photo": photo.name if args.photo else "astronaut.png (skimage.data.astronaut, 512x512 colour)",
        "upload_to_result_s": {
            "first": round(timings[0], 3),
            "median_after_first": round(statistics.median(timings[1:]), 3),
            "all": [round(t, 3) for t in timings],
        },
        "message": messages[-1],
        "same_answer_every_time": len(set(messages)) == 1,
        "screenshot": str(out / "demo_page.png"),
        "cpu": f"{os.cpu_count()} cores of an {cpu_model()} ({', '.join(cpu_bf16_units()) or 'no bf16 units'})",
        "app_threads": args.threads or "the page's default (the cores shared among the photos classified at once)",
    }
    text = json.dumps(result, indent=2)
    (out / "demo_page.json").write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
