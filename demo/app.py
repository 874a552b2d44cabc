#!/usr/bin/env python
"""A demo page for a FER model: a photo in, every face boxed and labelled, and a bar chart of the class scores per face.

    python demo/app.py                                    # the model shipped with the package, on 127.0.0.1:7860
    python demo/app.py --model outputs/ferplus_tiny --port 7861
    python demo/app.py --model user/vit-fer               # a Hub id

A Gradio page over :class:`modeling.inference.predictor.FERPredictor` and
:class:`modeling.inference.faces.HaarFaceDetector`, with ``fer-predict``'s face crops and drawing
(:mod:`modeling.inference.media`), on the CPU. The photo comes from an upload, the clipboard or the webcam (where
the browser allows it); a switch treats the whole image as one face crop (as ``fer-predict --no_detect``), and the
model box takes a local folder or a Hub id. An unreadable file, an image without a face or a model that does not load
gives a message on the page, never a traceback.

The work is :func:`analyze` (an RGB array in, the annotated array and per-face scores out), testable without a
browser; :class:`DemoApp` reads the upload, loads the model and lays out the page. This file is the ``app_file`` of
the Hugging Face Space described in ``demo/README.md``; there Spaces set ``GRADIO_SERVER_NAME=0.0.0.0``, which the
default ``--host`` follows.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeling.cli import plain_text, require_model, run_main
from modeling.inference.faces import Box, FaceDetector, HaarFaceDetector, crop_face, to_rgb
from modeling.inference.media import draw_faces, read_image
from modeling.inference.predictor import FERPredictor, NotAnImageClassifierError
from modeling.training.recipes import ScriptArgumentParser, parse_script_args

logger = logging.getLogger(__name__)

# The annotated photo the page shows is at most this large (a phone's 4000 px photo would be a 20 MB PNG). Faces are
# found and cropped at the photo's full size: the detector itself searches a copy of at most 1024 px, as fer-predict's.
MAX_SIDE = 1280
MAX_CHARTS = 12  # bar charts for the largest faces only; a crowd photo would make a figure metres tall
PHOTO_FORMATS = "JPEG, PNG, WebP, BMP, GIF or TIFF"


def page_threads(torch_threads: int | None, concurrency_limit: int, cores: int) -> int:
    """torch's threads for the page: as asked, else the cores shared among the photos classified at once."""
    return torch_threads or max(1, cores // concurrency_limit)


@dataclass
class DemoArguments:
    model: str | None = field(
        default=None,
        metadata={
            "help": "Local model folder or Hub id of an image classifier (default: the model shipped with the package)"
        },
    )
    host: str | None = field(
        default=None,
        metadata={"help": "Address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1; Spaces set 0.0.0.0)"},
    )
    port: int | None = field(default=None, metadata={"help": "Port (default: $GRADIO_SERVER_PORT, else 7860)"})
    device: str = field(default="cpu", metadata={"help": "torch device for the model"})
    margin: float = field(
        default=0.2, metadata={"help": "Context around a detected face, fraction of its size (fer-predict's --margin)"}
    )
    min_face_size: int = field(default=30, metadata={"help": "Smallest face the detector reports, in pixels"})
    # The queue's defaults come from bench/demo_load.py (results/demo_load.json): with 8 clients uploading photos at
    # once on an idle 2-core EPYC, two photos at a time on one thread each answered 2.35 uploads/s (p95 4.1 s), one at
    # a time on torch's 2 threads 1.47/s (p95 6.5 s): the face search and the image work around the model run on one
    # thread, so a second request fills the other core. (Beside other jobs, load average about 7, the order was
    # reversed and both slower: 0.97/s against 1.10/s.) Past queue_size waiting, an upload is refused at once
    # ("queue is full") rather than kept waiting: 32 is about 15 s at that rate.
    concurrency_limit: int = field(
        default=2,
        metadata={"help": "Photos classified at once; the others wait in the queue (bench/demo_load.py measured it)"},
    )
    queue_size: int = field(
        default=32,
        metadata={"help": "Uploads waiting at most; past it the page says the queue is full (0: no limit)"},
    )
    torch_threads: int | None = field(
        default=None,
        metadata={
            "help": "torch's CPU threads (default: $OMP_NUM_THREADS, else the cores shared among the photos classified "
            "at once)"
        },
    )

    def __post_init__(self):
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {self.port}")
        if self.margin < 0:
            raise ValueError(f"--margin must be >= 0, got {self.margin}")
        if self.min_face_size < 1:
            raise ValueError(f"--min_face_size must be positive, got {self.min_face_size}")
        if self.concurrency_limit < 1:
            raise ValueError(f"--concurrency_limit must be positive, got {self.concurrency_limit}")
        if self.queue_size < 0:
            raise ValueError(f"--queue_size must be >= 0 (0: no limit), got {self.queue_size}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"--torch_threads must be positive, got {self.torch_threads}")


@dataclass
class Analysis:
    """What the page shows for one photo."""

    image: np.ndarray | None  # [h, w, 3] uint8 RGB, at most MAX_SIDE, every face boxed and labelled "N: label score"
    faces: list[dict[str, Any]]  # per face, largest first: fer-predict's record {"box": [x, y, w, h], "label", ...}
    message: str  # Markdown: the faces found, or what went wrong


def analyze(
    image: np.ndarray,
    predictor: FERPredictor,
    detector: FaceDetector | None,
    margin: float = 0.2,
    max_side: int | None = MAX_SIDE,
) -> Analysis:
    """Finds the faces in ``image`` (``[H, W]`` or ``[H, W, 3]`` uint8) and classifies each one.

    ``detector=None`` takes the whole image as one face crop (``fer-predict --no_detect``); otherwise each box is
    cropped with ``margin`` of context (:func:`modeling.inference.faces.crop_face`), as ``fer-predict`` does. Boxes are
    in ``image``'s pixels; the annotated image is drawn as ``fer-predict --annotate`` draws it
    (:func:`modeling.inference.media.draw_faces`), its longer side at most ``max_side``.
    """
    image = to_rgb(image)
    height, width = image.shape[:2]
    if detector is None:
        boxes: list[Box] = [(0, 0, width, height)]
        crops = [image]
    else:
        boxes = detector.detect(image)
        crops = [crop_face(image, box, margin) for box in boxes]
    if not boxes:
        message = (
            f"**No face found** in this {width}x{height} image. The detector finds frontal faces that are not too "
            "small; if the photo already is a face crop, turn on *The whole image is one face*."
        )
        return Analysis(draw_faces(image, [], max_side), [], message)
    faces = [{"box": [int(v) for v in box], **result} for box, result in zip(boxes, predictor.predict(crops))]
    numbered = [{**face, "label": f"{i}: {face['label']}"} for i, face in enumerate(faces, start=1)]
    return Analysis(draw_faces(image, numbered, max_side), faces, summarize(faces, whole_image=detector is None))


def summarize(faces: Sequence[dict[str, Any]], whole_image: bool = False) -> str:
    """Markdown: one line per face, ``1. **happiness** 0.83 at (x, y, w, h)``."""
    head = (
        "**The whole image as one face**" if whole_image else f"**{len(faces)} face{'s' * (len(faces) != 1)} found**"
    )
    lines = [
        f"{i}. **{face['label']}** {face['score']:.2f} at {tuple(face['box'])}" for i, face in enumerate(faces, 1)
    ]
    return "\n".join([head, "", *lines])


def scores_figure(faces: Sequence[dict[str, Any]], max_charts: int = MAX_CHARTS):
    """A matplotlib ``Figure``: one horizontal bar chart of the class probabilities per face (the first ``max_charts``).

    Classes keep the model's order, so the charts of two faces line up; the top class is drawn in green.
    """
    from matplotlib.figure import Figure  # no pyplot: the figure is not kept in a global registry

    shown = list(faces)[:max_charts]
    names = list(shown[0]["scores"]) if shown else []
    fig = Figure(figsize=(5.5, 0.6 + (0.32 * len(names) + 0.5) * max(1, len(shown))), dpi=100, layout="constrained")
    for i, face in enumerate(shown, start=1):
        ax = fig.add_subplot(len(shown), 1, i)
        values = [face["scores"][name] for name in names]
        colors = ["#2ca02c" if name == face["label"] else "#9aa5b1" for name in names]
        ax.barh(range(len(names)), values, color=colors)
        ax.set_yticks(range(len(names)), labels=names)
        ax.invert_yaxis()  # the model's first class on top
        ax.set_xlim(0, 1)
        ax.set_title(f"Face {i}: {face['label']} {face['score']:.2f}", fontsize=10, loc="left")
        for y, v in enumerate(values):
            ax.text(min(v + 0.01, 0.9), y, f"{v:.2f}", va="center", fontsize=8)
    if len(faces) > len(shown):
        fig.suptitle(f"the {len(shown)} largest of {len(faces)} faces", fontsize=9)
    return fig


class UnreadablePhoto(ValueError):
    """The upload is not an image that PIL can read."""


def read_photo(photo: Any) -> tuple[np.ndarray, str]:
    """``([H, W, 3] uint8 RGB, a name)`` from what the page sends (Gradio's file payload, a ``data:`` URL from some
    webcams), a path or an array. Raises :class:`UnreadablePhoto` with a message for the page."""
    from PIL import Image

    if isinstance(photo, np.ndarray):
        return to_rgb(photo), "image"
    if isinstance(photo, dict):  # {"path", "url", "orig_name", ...}: the event skips Gradio's own decoding
        name = photo.get("orig_name") or Path(photo.get("path") or "image").name
        url = photo.get("url") or ""
        source: Any = photo.get("path")
        if url.startswith("data:"):
            try:
                source = io.BytesIO(base64.b64decode(url.split(",", 1)[1], validate=True))
            except (IndexError, ValueError) as err:  # binascii.Error is a ValueError
                raise UnreadablePhoto(f"{name} arrived as a malformed data URL") from err
        elif not source:
            raise UnreadablePhoto("the upload arrived without a file; try again")
    else:
        source, name = Path(photo), Path(photo).name
    try:
        return read_image(source), name  # EXIF orientation applied, as fer-predict reads photos
    except Image.UnidentifiedImageError as err:
        raise UnreadablePhoto(f"{name} is not an image (not a format that Pillow reads)") from err
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        reason = str(err).replace(str(source), name)  # the page does not show the server's paths
        raise UnreadablePhoto(f"{name} could not be read as an image ({reason})") from err


class DemoApp:
    """The page: the model box, the predictors loaded so far (one per model) and the face detector."""

    def __init__(
        self,
        model: str | None,
        device: str = "cpu",
        margin: float = 0.2,
        min_face_size: int = 30,
        model_notice: str | None = None,
    ):
        self.model, self.device, self.margin = model, device, margin
        self.model_notice = model_notice  # why there is no default model, shown on the page
        self.detector = HaarFaceDetector(min_size=(min_face_size, min_face_size))
        self._predictors: dict[str, FERPredictor] = {}
        self._lock = threading.Lock()  # Gradio runs events in worker threads

    def predictor(self, model: str) -> FERPredictor:
        """The predictor for ``model`` (a folder or Hub id), loaded once; the last two stay loaded."""
        with self._lock:
            if model not in self._predictors:
                logger.info("Loading model %s", model)
                require_model("", model)  # a missing local folder typed in the box is not looked up on the Hub
                predictor = FERPredictor(model, device=self.device)
                while len(self._predictors) >= 2:
                    self._predictors.pop(next(iter(self._predictors)))
                self._predictors[model] = predictor
            return self._predictors[model]

    def classify(self, photo: Any, whole_image: bool, model: str | None):
        """The page's event: ``(annotated image, scores figure, Markdown message, per-face records)``."""
        if photo is None:
            return None, None, "Upload a photo, paste one or take one with the webcam.", []
        try:
            image, name = read_photo(photo)
        except UnreadablePhoto as err:
            return None, None, f"**Not an image**: {err}. Upload a {PHOTO_FORMATS} photo.", []
        model = (model or "").strip()
        if not model:
            notice = f" ({self.model_notice})" if self.model_notice else ""
            return image, None, f"**No model**{notice}: type a model folder or a Hub id in the *Model* box.", []
        try:
            predictor = self.predictor(model)
        except (NotAnImageClassifierError, OSError, ValueError) as err:
            return image, None, f"**The model could not be loaded**: {err}", []
        try:
            result = analyze(image, predictor, None if whole_image else self.detector, self.margin)
        except Exception as err:  # the page shows a line, the log keeps the traceback
            logger.exception("Classifying %s failed", name)
            return image, None, f"**Something went wrong** with {name}: {type(err).__name__}: {err}", []
        figure = scores_figure(result.faces) if result.faces else None
        return result.image, figure, result.message, result.faces

    def build(self):
        """The Gradio ``Blocks`` page."""
        import gradio as gr

        choices = [self.model] if self.model else []
        with gr.Blocks(title="Facial expression recognition", analytics_enabled=False) as page:
            gr.Markdown(
                "# Facial expression recognition\n"
                "Upload a photo (or take one with the webcam): every face found is boxed and labelled, with a bar "
                "chart of the class scores per face. Faces are found by OpenCV's Haar cascade (frontal faces); "
                "the expression classifier is a ViT fine-tuned from an MAE (`fer-mae`)."
            )
            with gr.Row():
                with gr.Column():
                    photo = gr.Image(
                        label="Photo",
                        sources=["upload", "webcam", "clipboard"],
                        type="filepath",
                        elem_id="photo",
                    )
                    whole_image = gr.Checkbox(
                        label="The whole image is one face (no face detection, like fer-predict --no_detect)",
                        value=False,
                        elem_id="whole-image",
                    )
                    model = gr.Dropdown(
                        choices=choices,
                        value=self.model,
                        allow_custom_value=True,
                        label="Model: a local folder or a Hub id",
                        elem_id="model",
                    )
                    if self.model_notice and not self.model:
                        gr.Markdown(f"**No model ships with this install**: {self.model_notice}", elem_id="notice")
                    run = gr.Button("Find the faces again", variant="primary")
                with gr.Column():
                    annotated = gr.Image(
                        label="Faces", type="numpy", format="png", interactive=False, elem_id="annotated"
                    )
                    message = gr.Markdown("Upload a photo to start.", elem_id="message")
                    # no label: it would cover the first chart's title, which says the same
                    chart = gr.Plot(show_label=False, format="png", elem_id="scores")
                    with gr.Accordion("Per face, as fer-predict writes it (JSON)", open=False):
                        details = gr.JSON(elem_id="details")
            inputs, outputs = [photo, whole_image, model], [annotated, chart, message, details]
            # preprocess=False: the event reads the file itself, so that a file that is not an image gets a message
            # on the page instead of Gradio's bare "Error" (the upload is still checked to lie in Gradio's cache).
            # One concurrency group: the queue's limit counts the four triggers together, as they share the CPU.
            for trigger in (photo.change, whole_image.change, model.change, run.click):
                trigger(
                    self.classify,
                    inputs,
                    outputs,
                    preprocess=False,
                    show_progress="minimal",
                    concurrency_id="classify",
                )
        return page


def warm_up(predictor: FERPredictor) -> None:
    """One forward pass and one chart, so that the first upload is as quick as the next (matplotlib's first figure
    loads its fonts: about 0.6 s on a 2-core machine)."""
    result = analyze(np.zeros((64, 64, 3), np.uint8), predictor, None)
    scores_figure(result.faces).savefig(io.BytesIO(), format="png")


def resolve_model(model: str | None) -> tuple[str | None, str | None]:
    """``(model, notice)``: ``model`` if given, else the shipped model's folder; the notice says why there is none."""
    if model:
        return model, None
    try:
        from modeling import default_model_dir

        return str(default_model_dir()), None
    except ImportError:  # a fer-mae older than the shipped model
        return None, "this version of fer-mae has no modeling.default_model_dir"
    except FileNotFoundError as err:
        return None, str(err)


def main(argv: Sequence[str] | None = None):
    # 1. Arguments: flags, or a JSON file of them as the sole argument (modeling/training/recipes.py).
    parser = ScriptArgumentParser(DemoArguments, prog="demo/app.py", description=plain_text(__doc__))
    (args,) = parse_script_args(parser, sys.argv[1:] if argv is None else argv)
    require_model("--model", args.model)  # a missing local folder stops here, not after retries on the Hub

    # 2. Logging.
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    # Before the model loads; Gradio's worker threads inherit it. An OMP_NUM_THREADS the user set is kept.
    if args.torch_threads or "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(page_threads(args.torch_threads, args.concurrency_limit, os.cpu_count() or 1))

    # 3. Model: the one asked for, else the shipped one; without either, the page says how to choose one.
    model, notice = resolve_model(args.model)
    if notice:
        logger.warning("No default model: %s", notice)
    app = DemoApp(model, args.device, args.margin, args.min_face_size, model_notice=notice)
    if model:  # load it now rather than on the first upload; a model that does not load is reported on the page
        try:
            warm_up(app.predictor(model))
        except (NotAnImageClassifierError, OSError, ValueError) as err:
            logger.warning("The model %s does not load: %s", model, err)

    # 4. Page: on the CPU, loopback unless Spaces (or the user) say otherwise.
    host = args.host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = args.port or int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    logger.info("Model %s; serving on http://%s:%d", model, host, port)
    queue = {"default_concurrency_limit": args.concurrency_limit, "max_size": args.queue_size or None}
    logger.info("Queue %s, torch threads %d", queue, torch.get_num_threads())
    app.build().queue(**queue).launch(server_name=host, server_port=port, show_error=False)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "demo/app.py"))
