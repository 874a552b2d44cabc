#!/usr/bin/env python
"""The demo page under load: N clients uploading real photos at once, as N browser tabs would, on loopback.

    python bench/demo_load.py                                  # the shipped model, 8 clients x 25 uploads, 2 settings
    python bench/demo_load.py --settings 1:2 2:1 2:2 --clients 8 --uploads 25
    python bench/demo_load.py --model outputs/run --clients 2 --uploads 2 --settings 1:1 --sizes 512   # a smoke run

For each setting ``LIMIT:THREADS`` (the page's ``--concurrency_limit`` and ``--torch_threads``) it starts
``python demo/app.py`` on a free 127.0.0.1 port (demo/browser.py's ``serve``), waits until the page answers, and
drives it through Gradio's own HTTP API with ``gradio_client`` (installed with gradio): every client is a session
of its own, which uploads the photo, joins the queue of the page's photo event (``/classify``, the one an upload
triggers), streams the answer and downloads the annotated image, as the browser does. Then it stops the page.

The photos are public-domain portraits (scikit-image's astronaut, matplotlib's Grace Hopper: bench/photos.py),
encoded as JPEG with the longer side at each of ``--sizes`` pixels, from a small upload to a phone photo. Each photo
is first uploaded alone (unmeasured): that answer is the reference. Then all clients start together, client ``c``
sending the photos in turn from the ``c``-th, ``--uploads`` each. The load is bounded: an upload not answered in
``--timeout`` seconds is a timeout (and cancelled), and no upload starts after ``--max_seconds``.

An upload is an error when it raises (a refused or broken connection, a full queue), when the page answers with
one of its error messages, or when its answer differs from the same photo's answer alone (a race between requests).
The latency is from the start of the upload to the downloaded answer. Writes ``--out`` (``results/demo_load.json``):
the machine, the page's queue and threads, clients, uploads, errors, timeouts, p50/p95/max latency, throughput, for
every setting, and the setting with the best p95 among those with no error and no timeout.

The clients run on the same machine as the page and take some of its CPU; on a server the page would have it all.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.util
import json
import os
import re
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The page's error answers (demo/app.py DemoApp.classify); any of them under load is an error.
PAGE_ERRORS = ("**Not an image**", "**No model**", "**The model could not be loaded**", "**Something went wrong**")
EVENT = "/classify"  # the photo's change event: what an upload in the browser triggers
# Gradio 3's queue(concurrency_count=...) became the per-event concurrency_limit in Gradio 4; recorded as absent
QUEUE_KEYS = ("default_concurrency_limit", "max_size", "concurrency_count")


def load_module(name: str, path: Path):
    """A script of demo/ as a module (demo/ is a Space's folder, not a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


def parse_setting(text: str) -> tuple[int, int]:
    """``"2:1"`` -> ``(2, 1)``: the page's concurrency limit and torch threads."""
    match = re.fullmatch(r"(\d+):(\d+)", text)
    if not match or min(map(int, match.groups())) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not LIMIT:THREADS with both positive (e.g. 2:1)")
    return int(match[1]), int(match[2])


def write_photos(folder: Path, sizes: list[int]) -> list[Path]:
    """bench/photos.py's portraits as JPEG files (quality 90), the longer side scaled to each of ``sizes``."""
    from photos import write_photos as write_pngs
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for png in write_pngs(folder):
        image = Image.open(png).convert("RGB")
        for size in sizes:
            scale = size / max(image.size)
            resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
            path = folder / f"{png.stem}_{size}.jpg"
            resized.save(path, quality=90)
            paths.append(path)
    return paths


@dataclass
class Upload:
    """One upload's outcome."""

    photo: str
    seconds: float | None = None  # from the start of the upload to the downloaded answer; None if it never answered
    error: str | None = None  # why it counts as an error
    timeout: bool = False


@dataclass
class Tally:
    """The uploads of one setting, filled by the client threads."""

    uploads: list[Upload] = field(default_factory=list)
    not_started: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, upload: Upload) -> None:
        with self.lock:
            self.uploads.append(upload)


def send(client, photo: Path, model: str | None, timeout: float) -> tuple[str | None, Upload]:
    """Uploads ``photo`` to the page's event and waits for the answer: ``(the page's message, the outcome)``."""
    from gradio_client import handle_file

    upload = Upload(photo.name)
    start = time.perf_counter()
    job = client.submit(handle_file(str(photo)), False, model, api_name=EVENT)
    try:
        image, _figure, message, _faces = job.result(timeout=timeout)
    except concurrent.futures.TimeoutError:  # the builtin TimeoutError from Python 3.11 on, not in 3.10
        job.cancel()
        upload.timeout = True
        return None, upload
    except Exception as err:  # what the client raises for a refused connection, a full queue, a server error
        upload.error = f"{type(err).__name__}: {err}"
        return None, upload
    upload.seconds = time.perf_counter() - start
    if message.startswith(PAGE_ERRORS):
        upload.error = f"the page answered: {message.splitlines()[0]}"
    elif image is None or not Path(image).is_file():
        upload.error = "the answer holds no annotated image"
    return message, upload


def connect(url: str, downloads: Path):
    """A gradio_client session of the page: no telemetry, the answers' files downloaded to ``downloads``."""
    from gradio_client import Client

    downloads.mkdir(parents=True, exist_ok=True)
    return Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads))


def git_commit() -> str | None:
    """The checkout's commit, ``+`` when files differ from it (None outside a git checkout)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "") if head.returncode == 0 else None


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(values, q)), 3)


def load(url: str, folder: Path, photos: list[Path], model: str | None, args) -> dict:
    """The reference answers, then ``args.clients`` clients x ``args.uploads`` uploads at once: the tally."""
    from modeling.cli import UserError

    reference, lone = {}, []
    first = connect(url, folder / "client_0")
    for photo in photos:  # alone: the reference answer of each photo, and the page's warm-up at each size
        message, upload = send(first, photo, model, args.timeout)
        if message is None or upload.error:
            raise UserError(f"the page did not answer {photo.name} alone: {upload.error or 'timeout'}")
        reference[photo.name] = message
        lone.append(upload.seconds)
    clients = [first] + [connect(url, folder / f"client_{c}") for c in range(1, args.clients)]
    tally, barrier = Tally(), threading.Barrier(args.clients + 1)
    deadline = [0.0]

    def run(c: int) -> None:
        barrier.wait()
        for i in range(args.uploads):
            if time.monotonic() > deadline[0]:
                with tally.lock:
                    tally.not_started += args.uploads - i
                return
            photo = photos[(c + i) % len(photos)]
            message, upload = send(clients[c], photo, model, args.timeout)
            if message is not None and not upload.error and message != reference[photo.name]:
                upload.error = f"the answer differs from {photo.name}'s alone: {message.splitlines()[0]}"
            tally.add(upload)

    threads = [threading.Thread(target=run, args=(c,), name=f"client-{c}") for c in range(args.clients)]
    deadline[0] = time.monotonic() + args.max_seconds  # reset at the start below; set here in case a thread is fast
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + args.max_seconds
    start = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    for client in clients:
        client.close()
    answered = [u.seconds for u in tally.uploads if u.seconds is not None and not u.error]
    errors = [u for u in tally.uploads if u.error]
    return {
        "uploads": len(tally.uploads),
        "answered": len(answered),
        "errors": len(errors),
        "timeouts": sum(u.timeout for u in tally.uploads),
        "not_started": tally.not_started,
        "latency_s": {
            "p50": percentile(answered, 50) if answered else None,
            "p95": percentile(answered, 95) if answered else None,
            "max": round(max(answered), 3) if answered else None,
            "mean": round(sum(answered) / len(answered), 3) if answered else None,
        },
        "throughput_uploads_per_s": round(len(answered) / wall, 3),
        "wall_s": round(wall, 1),
        "alone_s": {"median": percentile(lone, 50), "max": round(max(lone), 3)},
        "per_photo_p50_s": {
            p.name: percentile(s, 50)
            for p in photos
            if (s := [u.seconds for u in tally.uploads if u.photo == p.name and u.seconds is not None])
        },
        "error_samples": sorted({u.error for u in errors})[:5],
        "answers_alone": {name: " ".join(message.split()) for name, message in reference.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model folder or Hub id (default: the page's, the shipped one)")
    parser.add_argument(
        "--settings",
        nargs="+",
        type=parse_setting,
        default=[(1, 2), (2, 1)],
        help="The page's LIMIT:THREADS to compare (--concurrency_limit and --torch_threads), one run each",
    )
    parser.add_argument("--clients", type=int, default=8, help="Clients uploading at once (sessions of the page)")
    parser.add_argument("--uploads", type=int, default=25, help="Uploads per client, after the reference answers")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[512, 1024, 2000, 4000], help="Longer sides of the JPEG photos, px"
    )
    parser.add_argument("--queue_size", type=int, default=32, help="The page's --queue_size (its queue's max_size)")
    parser.add_argument("--timeout", type=float, default=60, help="Seconds an upload may wait for its answer")
    parser.add_argument("--max_seconds", type=float, default=300, help="No upload starts later, per setting")
    parser.add_argument("--out", default=str(ROOT / "results" / "demo_load.json"))
    args = parser.parse_args(argv)
    if args.clients < 1 or args.uploads < 1:
        parser.error("--clients and --uploads must be at least 1")
    if min(args.sizes) < 64:
        parser.error("--sizes must be at least 64 px (a face must fit)")
    if args.queue_size < args.clients:
        parser.error(f"--queue_size {args.queue_size} is below --clients {args.clients}: the queue would refuse some")
    # no telemetry from the client, nothing from the Hub: everything stays on 127.0.0.1
    os.environ.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1")
    from modeling.cli import UserError

    try:
        import gradio_client
    except ImportError as err:
        raise UserError(
            f'bench/demo_load.py needs gradio_client, installed with gradio ({err}): pip install -e ".[demo]"'
        ) from err
    import torch

    from modeling.precision import cpu_bf16_units, cpu_model

    drive = load_module("demo_browser", ROOT / "demo" / "browser.py")
    page = load_module("demo_app", ROOT / "demo" / "app.py")
    defaults = page.DemoArguments()
    if args.model and Path(args.model).exists():  # the page runs in the repository's root
        args.model = str(Path(args.model).resolve())
    model = args.model
    if model is None:  # the page's own default, passed along so that the event gets it as the browser sends it
        model, notice = page.resolve_model(None)
        if model is None:
            raise UserError(f"no --model and no default model: {notice}")

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_photos(tmp / "photos", sorted(set(args.sizes)))
        for limit, threads in args.settings:
            folder = tmp / f"limit{limit}_threads{threads}"
            flags = ["--concurrency_limit", str(limit), "--torch_threads", str(threads)]
            flags += ["--queue_size", str(args.queue_size)]
            print(f"setting: concurrency_limit {limit}, torch threads {threads}", file=sys.stderr)
            with drive.serve(folder / "server", model=args.model, threads=None, args=flags) as url:
                before = os.getloadavg()[0]
                tally = load(url, folder, photos, model, args)
                # other processes on the machine show here: the page and its clients alone keep it near 2 at most
                tally["load_average_1min"] = {"before": round(before, 2), "after": round(os.getloadavg()[0], 2)}
            logged = re.search(r"torch threads (\d+)", (folder / "server" / "server.log").read_text())
            queue = {"default_concurrency_limit": limit, "max_size": args.queue_size, "concurrency_count": None}
            results.append({"queue": queue, "torch_threads": int(logged[1]) if logged else None, **tally})
            print(json.dumps(results[-1]["latency_s"]), file=sys.stderr)
        photo_sizes = {}
        from PIL import Image

        for photo in photos:
            with Image.open(photo) as image:
                photo_sizes[photo.name] = {"size": list(image.size), "kib": round(photo.stat().st_size / 1024)}

    clean = [r for r in results if r["errors"] == 0 and r["timeouts"] == 0 and r["not_started"] == 0]
    best = min(clean, key=lambda r: r["latency_s"]["p95"]) if clean else None
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(["python", "bench/demo_load.py", *(sys.argv[1:] if argv is None else argv)]),
        "commit": git_commit(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "bf16_units": cpu_bf16_units(),
            "torch": torch.__version__,
            "torch_threads_default": torch.get_num_threads(),
            "gradio_client": gradio_client.__version__,
        },
        "model": args.model or "the shipped model (modeling.default_model_dir())",
        "event": EVENT,
        "photos": photo_sizes,
        "clients": args.clients,
        "uploads_per_client": args.uploads,
        "timeout_s": args.timeout,
        "max_seconds": args.max_seconds,
        "note": "the clients run on the same machine as the page; concurrency_count is Gradio 3's, absent in Gradio 6",
        "settings": results,
        "chosen": None
        if best is None
        else {
            "why": "the best p95 latency among the settings without errors, timeouts or uploads left unstarted",
            "concurrency_limit": best["queue"]["default_concurrency_limit"],
            "torch_threads": best["torch_threads"],
            "queue_size": args.queue_size,
            "clients": args.clients,
            "uploads": best["uploads"],
            "errors": best["errors"],
            "timeouts": best["timeouts"],
            "latency_s": best["latency_s"],
            "throughput_uploads_per_s": best["throughput_uploads_per_s"],
        },
        "page_defaults": {
            "concurrency_limit": defaults.concurrency_limit,
            "queue_size": defaults.queue_size,
            "torch_threads": defaults.torch_threads,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    from modeling.cli import run_main

    sys.exit(run_main(main, "bench/demo_load.py"))
