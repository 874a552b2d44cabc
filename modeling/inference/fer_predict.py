"""``fer-predict``: facial expressions of the faces in images, folders and videos, as JSON lines.

    fer-predict photo.jpg photos/ clip.mp4 --annotate annotated/ --output faces.jsonl --model DIR_OR_HUB_ID

Without ``--model``, the model shipped with the package (``modeling.default_model_dir()``) is used.
A local ViT classifier (the shipped model, a ``run_finetune.py`` output) runs in plain torch without importing
transformers (``--runtime auto``, :mod:`modeling.inference.vit_runtime`: the same logits, seconds less start-up);
anything else through transformers. ``--precision auto`` (default) runs bf16 autocast on CUDA or a CPU with bf16 units
and int8 dynamic quantization on other CPUs; ``--precision fp32`` forces float32. The arithmetic that runs is named on
stderr.

One line per face: ``{"file", "frame", "box": [x, y, w, h], "label", "score", "scores"}``
(``frame`` is null for images), plus ``"annotated"``, the path of the annotated copy, with ``--annotate``.
A missing or unreadable file, an image without a face or a video without any face gives one line with an ``error``
field, and the run goes on. The exit status is 1 only if no input at all could be read, and 2 (before the model
loads) if nothing is there to read: only missing files and folders without images or videos.

Faces are found by OpenCV's Haar cascade on a copy of at most ``--detect_max_side`` px (1024), and must measure
``--min_face_size`` px (30) and ``--min_face_fraction`` of the image's shorter side (1/16): a large photo's texture
gives no false faces, and a crowd's small faces need ``--min_face_fraction 0`` (:mod:`modeling.inference.faces`).
The annotated copies (``--annotate DIR``) keep each photo's name, relative folder and format (a JPEG stays a JPEG),
at most 2048 px on their longer side (:mod:`modeling.inference.media`); video frames become JPEGs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, TextIO

import numpy as np
import torch

from ..cli import HelpFormatter, MissingFileError, UsageError, plain_text, require_model, run_main, user_errors
from ..precision import INFERENCE_PRECISIONS as PRECISIONS
from .faces import DETECT_MAX_SIDE, MIN_FACE_FRACTION, Box, FaceDetector, HaarFaceDetector, crop_face
from .media import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    copy_bases,
    copy_format,
    copy_name,
    draw_faces,
    expand_inputs,
    iter_video_frames,
    media_files,
    read_image,
    save_copy,
)
from .predictor import RUNTIMES, FERPredictor, NotAnImageClassifierError
from .shipped import default_model_dir, holds_model

logger = logging.getLogger(__name__)

# Tight face crops (FER+, RAF-DB aligned, an already cropped photo) hold too little context for the detector.
NO_FACE_HINT = "if the inputs already are face crops, pass --no_detect"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fer-predict", description=plain_text(__doc__), formatter_class=HelpFormatter)
    p.add_argument("inputs", nargs="+", help="Image files, folders (searched recursively) or video files")
    p.add_argument(
        "--model",
        default=None,
        metavar="DIR_OR_HUB_ID",
        help="Local model directory or Hub id of an image classifier (default: the model shipped with the package)",
    )
    p.add_argument("--output", default="-", help="JSON lines file (default: stdout)")
    p.add_argument(
        "--annotate",
        default=None,
        help="Folder for copies of the images with boxes and labels drawn, named and formatted as the inputs\n"
        "(folders mirrored; at most 2048 px); each JSON line names its copy",
    )
    p.add_argument("--no_detect", action="store_true", help="Treat every image as a face crop (no face detection)")
    p.add_argument("--margin", type=float, default=0.2, help="Context around a detected face, fraction of its size")
    p.add_argument("--min_face_size", type=int, default=30, help="Smallest face the detector reports, in pixels")
    p.add_argument(
        "--min_face_fraction",
        type=float,
        default=MIN_FACE_FRACTION,
        help=f"Smallest face the detector reports, as a fraction of the image's shorter side (default\n"
        f"{MIN_FACE_FRACTION:g} = 1/16: no false faces in a large photo's texture); 0 for crowds of small faces",
    )
    p.add_argument(
        "--detect_max_side",
        type=int,
        default=DETECT_MAX_SIDE,
        help=f"Faces are searched on a copy whose longer side is at most this (default {DETECT_MAX_SIDE});\n"
        "0: at full size (slow on large photos; with --min_face_fraction 0, finds smaller faces)",
    )
    p.add_argument("--every_n_frames", type=int, default=10, help="Classify one video frame in N")
    p.add_argument("--batch_size", type=int, default=64, help="Faces per forward pass")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="Arithmetic: auto (default) = bf16 autocast on CUDA or a CPU with bf16 units (AMX / AVX512-BF16), int8\n"
        "dynamic quantization of the linear layers on other CPUs; fp32 forces float32; bf16 and int8 force those",
    )
    p.add_argument("--bf16", action="store_true", help="Same as --precision bf16")
    p.add_argument(
        "--no_recheck",
        action="store_true",
        help="int8: do not re-run close calls in float32 (by default faces whose int8 top-2 logit gap is under twice\n"
        "the int8 error measured on the first 8 faces run again in float32, so that labels are float32's)",
    )
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="How the model runs: auto (default) = plain torch for a local ViT classifier\n"
        "(modeling.inference.vit_runtime: the same logits, seconds less start-up, transformers not imported),\n"
        "transformers for anything else (Hub ids); transformers or plain force one",
    )
    p.add_argument("--threads", type=int, default=None, help="torch (and ONNX Runtime) threads (default: torch's)")
    p.add_argument("--onnx", default=None, help="Run this exported .onnx file with ONNX Runtime instead of PyTorch")
    p.add_argument("--no_progress", action="store_true", help="No progress bar")
    args = p.parse_intermixed_args(argv)  # `fer-predict a.jpg --model M b.jpg` too
    if args.every_n_frames < 1 or args.batch_size < 1:
        p.error("--every_n_frames and --batch_size must be positive")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    if args.min_face_size < 1:
        p.error(f"--min_face_size must be positive, got {args.min_face_size}")
    if not 0 <= args.min_face_fraction < 1:
        p.error(f"--min_face_fraction must be in [0, 1) (0: no minimum), got {args.min_face_fraction:g}")
    if args.detect_max_side < 0:
        p.error(f"--detect_max_side must be >= 0 (0: the full size), got {args.detect_max_side}")
    if args.bf16:
        if args.precision not in (None, "bf16"):
            p.error(f"--bf16 contradicts --precision {args.precision}")
        args.precision = "bf16"
    args.precision = args.precision or "auto"
    if args.onnx and args.precision not in ("auto", "fp32"):
        p.error(f"--precision {args.precision} does not apply to --onnx: the ONNX graph fixes the arithmetic")
    return args


@dataclass
class _Pending:
    """An image (or video frame) whose faces wait in the batch."""

    file: str
    frame: int | None
    image: np.ndarray
    boxes: list[Box]
    results: list[dict[str, Any]] = field(default_factory=list)


class _Runner:
    """Accumulates face crops across images into batches, writes records in input order."""

    def __init__(
        self,
        predictor,
        detector: FaceDetector | None,
        args: argparse.Namespace,
        out: TextIO,
        inputs: Sequence[tuple[Path, PurePath]] = (),
    ):
        self.predictor, self.detector, self.args, self.out = predictor, detector, args, out
        self.queue: list[_Pending] = []
        self.crops: list[np.ndarray] = []
        self.annotate_dir = Path(args.annotate) if args.annotate else None
        # input file -> (its name, where its annotated copies go under annotate_dir, without suffix)
        is_video = [path.suffix.lower() in VIDEO_EXTENSIONS for path, _ in inputs]
        bases = copy_bases([(path, name, video) for (path, name), video in zip(inputs, is_video)])
        self.copies = {str(path): (name, bases[path]) for path, name in inputs}
        self.faces = 0

    def write(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record) + "\n")

    def add(self, file: str, frame: int | None, image: np.ndarray) -> int:
        """Queues the faces of one image; returns how many were found."""
        if self.detector is None:
            boxes: list[Box] = [(0, 0, image.shape[1], image.shape[0])]
            crops = [image]
        else:
            boxes = self.detector.detect(image)
            crops = [crop_face(image, box, self.args.margin) for box in boxes]
        if boxes:
            self.queue.append(_Pending(file, frame, image, boxes))
            self.crops.extend(crops)
            if len(self.crops) >= self.args.batch_size:
                self.flush()
        return len(boxes)

    def flush(self) -> None:
        if not self.crops:
            return
        results = self.predictor.predict(self.crops, batch_size=self.args.batch_size)
        i = 0
        for item in self.queue:
            copy = self._copy_path(item)
            for box in item.boxes:
                rec = {"file": item.file, "frame": item.frame, "box": [int(v) for v in box], **results[i]}
                if copy is not None:
                    rec["annotated"] = str(copy)
                item.results.append(rec)
                self.write(rec)
                i += 1
            if copy is not None:
                fmt = copy_format(copy.name)[0]
                save_copy(draw_faces(item.image, item.results), copy, fmt)
        self.faces += i
        self.queue, self.crops = [], []

    def _copy_path(self, item: _Pending) -> Path | None:
        """Where the annotated copy of ``item`` goes (``--annotate``): see :func:`modeling.inference.media.copy_bases`."""
        if self.annotate_dir is None:
            return None
        name, base = self.copies.get(item.file) or (PurePath(Path(item.file).name), PurePath(Path(item.file).stem))
        return self.annotate_dir / copy_name(base, name, item.frame)


def run(args: argparse.Namespace, out: TextIO) -> dict[str, int]:
    """Runs the predictor over ``args.inputs``; returns counts (files, read, unreadable, no_face, faces)."""
    from tqdm.auto import tqdm

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    predictor = FERPredictor(
        args.model,
        device=args.device,
        onnx=args.onnx,
        precision=args.precision,
        runtime=args.runtime,
        recheck=not args.no_recheck,
    )
    n = torch.get_num_threads()
    threads = f"; {n} thread{'s' if n > 1 else ''}" if predictor.device.type == "cpu" else ""
    if predictor.images_at_once > 1:
        threads += f", {predictor.images_at_once} faces at a time (one thread each)"
    if predictor.rechecks:
        threads += "; close calls re-run in float32 (--no_recheck: int8 only)"
    print(f"fer-predict: precision: {predictor.precision_why}{threads}", file=sys.stderr)
    print(f"fer-predict: runtime: {predictor.runtime_why}", file=sys.stderr)
    detector = None
    if not args.no_detect:
        detector = HaarFaceDetector(
            min_size=(args.min_face_size, args.min_face_size),
            max_side=args.detect_max_side or None,
            min_fraction=args.min_face_fraction,
        )
    inputs = expand_inputs(args.inputs)
    runner = _Runner(predictor, detector, args, out, inputs)
    paths = [path for path, _ in inputs]
    counts = {"files": len(paths), "read": 0, "missing": 0, "unreadable": 0, "no_face": 0}
    show = not args.no_progress and (any(Path(i).is_dir() for i in args.inputs) or len(paths) > 1)
    for path in tqdm(paths, desc="files", unit="file", disable=not show, file=sys.stderr):
        if not path.exists():  # named on the command line (a folder's files exist)
            runner.flush()  # keep the output in input order
            counts["missing"] += 1
            runner.write({"file": str(path), "frame": None, "error": "no such file"})
            continue
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            found, frames = 0, 0
            try:
                bar = tqdm(desc=path.name, unit="frame", disable=args.no_progress, leave=False, file=sys.stderr)
                for frame_index, frame in iter_video_frames(path, args.every_n_frames):
                    found += runner.add(str(path), frame_index, frame)
                    frames += 1
                    bar.update(1)
                bar.close()
            except (OSError, ValueError) as err:
                runner.flush()
                counts["unreadable"] += 1
                runner.write({"file": str(path), "frame": None, "error": f"unreadable video: {err}"})
                continue
            counts["read"] += 1
            if not found:
                counts["no_face"] += 1
                error = f"no face detected in {frames} frame(s); {NO_FACE_HINT}"
                runner.write({"file": str(path), "frame": None, "error": error})
            continue
        try:
            image = read_image(path)
        except (OSError, ValueError) as err:
            runner.flush()  # keep the output in input order
            counts["unreadable"] += 1
            runner.write({"file": str(path), "frame": None, "error": f"unreadable image: {err}"})
            continue
        counts["read"] += 1
        if runner.add(str(path), None, image) == 0:
            runner.flush()
            counts["no_face"] += 1
            runner.write({"file": str(path), "frame": None, "error": f"no face detected; {NO_FACE_HINT}"})
    runner.flush()
    counts["faces"] = runner.faces
    if predictor.rechecks and predictor.recheck_counts["faces"]:
        print(f"fer-predict: {recheck_summary(predictor)}", file=sys.stderr)
    return counts


# How fer-predict's stderr line on int8's float32 re-runs begins (after "fer-predict: "); bench/inference.py finds it so.
RERUNS_LINE = "int8 with float32 re-runs"


def recheck_summary(predictor: FERPredictor) -> str:
    """One line: how many faces the int8 path re-ran in float32, and why."""
    c = predictor.recheck_counts
    line = f"{RERUNS_LINE}: {c['calibration'] + c['close'] + c['after_switch']} of {c['faces']} faces "
    line += f"in float32 ({c['calibration']} to set the close-call threshold"
    if predictor.recheck_margin is None:
        return line + ", not reached)"
    line += f", {c['close']} with a top-2 logit gap under {predictor.recheck_margin:.3g}"
    if predictor.float32_from is None:
        return line + ")"
    start = predictor.float32_from + 1
    return line + f", {c['after_switch']} from face {start} on in float32 alone: {predictor.float32_why})"


def check_inputs(inputs: Sequence[str]) -> None:
    """Before the model loads: a folder without images or videos is named on stderr, with the extensions read, and
    when nothing is left to read (only such folders and missing files) the run stops with a :class:`MissingFileError`
    naming them."""
    problems = {}
    for item in inputs:
        if not Path(item).exists():
            problems[item] = "no such file"
        elif Path(item).is_dir() and next(media_files(Path(item)), None) is None:
            problems[item] = "the folder holds no images or videos"
    note = (
        f"fer-predict reads {' '.join(sorted(IMAGE_EXTENSIONS))} images and {' '.join(sorted(VIDEO_EXTENSIONS))} "
        "videos, in subfolders too"
    )
    if all(item in problems for item in inputs):
        listed = "; ".join(f"{item}: {problem}" for item, problem in problems.items())
        empty = any(problem != "no such file" for problem in problems.values())
        raise MissingFileError(f"nothing to read: {listed}" + (f" ({note})" if empty else ""))
    for item, problem in problems.items():
        if problem != "no such file":  # missing files get their JSON line, in input order
            print(f"fer-predict: {item}: {problem} ({note})", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``fer-predict`` script: 0, 1 if no input could be read, 2 after one line on stderr for a user error.

    It is the console script's entry point itself, so it goes through :func:`~modeling.cli.run_main` here.
    """
    return run_main(lambda: _main(argv), "fer-predict")


def _main(argv: Sequence[str] | None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    args = parse_args(argv)
    for item in args.inputs:  # the model used to be the first positional argument: say so, do not classify its PNGs
        if Path(item).is_dir() and holds_model(Path(item)):
            raise UsageError(f"{item} is a model folder, not an input: pass it as --model {item}")
    require_model("--model", args.model)  # a missing local folder is not taken for a Hub id (modeling/cli.py)
    check_inputs(args.inputs)
    default = args.model is None
    if default:
        args.model = str(default_model_dir())  # NoDefaultModelError (a UserError) says to pass --model
    print(f"fer-predict: model {args.model}" + (" (the default model)" if default else ""), file=sys.stderr)
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        with user_errors(NotAnImageClassifierError, FileNotFoundError):  # --model or --onnx names no usable model
            counts = run(args, out)
    finally:
        if out is not sys.stdout:
            out.close()
    summary = ", ".join(f"{k}={v}" for k, v in counts.items())
    print(f"fer-predict: {summary}", file=sys.stderr)
    if counts["no_face"]:  # the JSON lines may have gone to a file: repeat the hint where it is seen
        print(f"fer-predict: {counts['no_face']} input(s) without a detected face; {NO_FACE_HINT}", file=sys.stderr)
    if counts["read"] == 0:
        print("fer-predict: no input could be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
