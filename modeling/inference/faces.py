"""Face detection behind a small interface, and face cropping.

The default detector is OpenCV's frontal-face Haar cascade (Viola and Jones 2001), which
opencv-python(-headless) 4.x ships under ``cv2.data.haarcascades`` (5.x ships none, NOTES #13).
It is fast and offline but misses profiles and small faces; a better detector plugs in by
subclassing :class:`FaceDetector`. Images are ``uint8`` numpy arrays, ``[H, W]`` gray or
``[H, W, 3]`` RGB; boxes are ``(x, y, w, h)`` in pixels of the image given.

A large photo is not searched at its full size. At 4000x4000 the cascade tries windows from 30 px to the whole
image, and texture becomes faces: scikit-image's astronaut upscaled to 4000 px gave 7 boxes (the spacesuit's badge,
the helmet, the rocket), against one at 512 px. :class:`HaarFaceDetector` searches a copy whose longer side is at
most ``max_side`` (:func:`shrink_for_detection`), maps the boxes back (:func:`box_to_original`), and reports only faces
of at least ``min_fraction`` of the image's shorter side as well as ``min_size`` pixels (:func:`smallest_face`). A
subclass for another detector can reuse these three functions.
"""

from __future__ import annotations

import logging
import math
import threading
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

HAAR_FRONTAL_FACE = "haarcascade_frontalface_default.xml"
# The longer side of the copy the cascade searches. With the default MIN_FACE_FRACTION a 4:3 photo's smallest face
# there is 768 / 16 = 48 px, twice the cascade's 24 px window, so the downscale loses no face the defaults would report;
# and a 4000x4000 photo is searched in 0.25 s instead of 5.7 s (2 cores). With min_fraction=0, faces down to 30 px at
# this size (3% of the longer side) are found; a larger max_side finds smaller ones.
DETECT_MAX_SIDE = 1024
# The smallest face reported, as a fraction of the image's shorter side. The astronaut's false faces measure 2.9% to
# 5.5% of its side at any size from 1500 to 6000 px (upscaled by cv2 cubic, linear or Lanczos); at 512 px the 30 px
# minimum (5.9%) already kept them out. 1/16 (6.25%) keeps them out at every size, and keeps a row of about ten people
# across a landscape photo; a crowd's smaller faces need min_fraction=0 (fer-predict --min_face_fraction 0).
MIN_FACE_FRACTION = 1 / 16


class FaceDetector(ABC):
    """Finds faces in one image. Subclasses implement :meth:`detect`."""

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Box]:
        """Boxes ``(x, y, w, h)`` of the faces in ``image`` (``[H, W]`` or ``[H, W, 3]`` RGB uint8), largest first."""

    def __call__(self, image: np.ndarray) -> list[Box]:
        return self.detect(image)


class HaarFaceDetector(FaceDetector):
    """OpenCV Haar cascade detector.

    ``scale_factor`` and ``min_neighbors`` are ``detectMultiScale``'s, OpenCV's usual values for photos.
    A face is reported when its side is at least ``min_size`` pixels (a face below 30 px is too small to classify)
    and at least ``min_fraction`` of the image's shorter side (``MIN_FACE_FRACTION``: 1/16; 0 turns it off, for crowds
    of small faces). The cascade searches a copy of the image whose longer side is at most ``max_side`` pixels
    (``DETECT_MAX_SIDE``: 1024; None: the full size) and the boxes are mapped back to the image's pixels.
    """

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: tuple[int, int] = (30, 30),
        cascade_path: str | Path | None = None,
        max_side: int | None = DETECT_MAX_SIDE,
        min_fraction: float = MIN_FACE_FRACTION,
    ):
        if cascade_path is None:
            haar_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
            if haar_dir is None:
                raise RuntimeError(
                    "This OpenCV build ships no Haar cascades (cv2.data.haarcascades is missing; OpenCV 5.x dropped "
                    "them). Install opencv-python-headless>=4.8,<5 or pass cascade_path."
                )
            cascade_path = Path(haar_dir) / HAAR_FRONTAL_FACE
        cascade_path = Path(cascade_path)
        if not cascade_path.is_file():
            raise FileNotFoundError(f"Haar cascade file not found: {cascade_path}")
        cascade = cv2.CascadeClassifier(str(cascade_path))
        if cascade.empty():
            raise RuntimeError(f"OpenCV could not load the Haar cascade {cascade_path}")
        self.cascade_path = cascade_path
        self._local = threading.local()
        self._local.cascade = cascade
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be > 1, got {scale_factor}")
        if max_side is not None and max_side < 1:
            raise ValueError(f"max_side must be positive (None: the full size), got {max_side}")
        if not 0 <= min_fraction < 1:
            raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = (int(min_size[0]), int(min_size[1]))
        self.max_side = None if max_side is None else int(max_side)
        self.min_fraction = float(min_fraction)

    @property
    def cascade(self) -> cv2.CascadeClassifier:
        """This thread's cascade, loaded on its first use there. One ``CascadeClassifier`` searched by two threads
        at once returns wrong boxes or fails an assertion (``getScaleData``): the demo page does so at a queue
        concurrency of 2 (bench/demo_load.py), with one detector for its worker threads."""
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = self._local.cascade = cv2.CascadeClassifier(str(self.cascade_path))
        return cascade

    def detect(self, image: np.ndarray) -> list[Box]:
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise ValueError(f"Expected a uint8 image, got {image.dtype}")
        height, width = image.shape[:2]
        small, sx, sy = shrink_for_detection(image, self.max_side)
        gray = to_gray(small)
        smallest = smallest_face(height, width, self.min_size, self.min_fraction)
        min_size = (max(1, math.ceil(smallest[0] * sx)), max(1, math.ceil(smallest[1] * sy)))
        found = self.cascade.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=min_size
        )
        boxes = [
            box_to_original(tuple(int(v) for v in b), sx, sy, width, height) for b in (found if len(found) else [])
        ]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        logger.debug(
            "Haar cascade found %d face(s) of at least %s px in a %dx%d image searched at %dx%d",
            len(boxes),
            smallest,
            width,
            height,
            gray.shape[1],
            gray.shape[0],
        )
        return boxes


def smallest_face(height: int, width: int, min_size: tuple[int, int], min_fraction: float) -> tuple[int, int]:
    """``(w, h)`` of the smallest face to report in a ``height`` x ``width`` image: ``min_size`` pixels, and at least
    ``min_fraction`` of the image's shorter side."""
    relative = math.ceil(min_fraction * min(height, width))
    return max(min_size[0], relative), max(min_size[1], relative)


def shrink_for_detection(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float, float]:
    """``(copy, sx, sy)``: ``image`` scaled down (area interpolation) so that its longer side is at most ``max_side``,
    and the factors from the image's x and y to the copy's; the image itself and 1.0 when it is small enough."""
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image, 1.0, 1.0
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, size[0] / width, size[1] / height


def box_to_original(box: Box, sx: float, sy: float, width: int, height: int) -> Box:
    """A box found on the copy from :func:`shrink_for_detection` in the ``width`` x ``height`` image's pixels."""
    x, y, w, h = box
    x0, y0 = min(width, round(x / sx)), min(height, round(y / sy))
    x1, y1 = min(width, round((x + w) / sx)), min(height, round((y + h) / sy))
    return x0, y0, x1 - x0, y1 - y0


def to_gray(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` uint8 gray from gray, RGB or RGBA ``uint8``."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"Expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        rgb = image[:, :, :3].astype(np.float32)
        # ITU-R BT.601 luma, as cv2.cvtColor(RGB2GRAY) uses.
        return np.clip(rgb @ np.array([0.299, 0.587, 0.114], np.float32) + 0.5, 0, 255).astype(np.uint8)
    raise ValueError(f"Expected an image of shape [H, W] or [H, W, 3], got {image.shape}")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB from gray, RGB or RGBA ``uint8``."""
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"Expected an image of shape [H, W] or [H, W, 3], got {image.shape}")


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """``box`` grown by ``margin`` times its size on every side, clipped to the image."""
    x, y, w, h = box
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    dx, dy = int(round(w * margin)), int(round(h * margin))
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    return x0, y0, x1 - x0, y1 - y0


def crop_face(image: np.ndarray, box: Box, margin: float = 0.2) -> np.ndarray:
    """The face in ``box`` with ``margin`` (fraction of the box size) of context on every side, clipped to the image.

    A Haar box is tight around eyes, nose and mouth; FER training crops (FER+, RAF-DB aligned)
    include the forehead and chin, hence the default margin of 20 %.
    """
    height, width = image.shape[:2]
    x, y, w, h = expand_box(box, margin, width, height)
    if w <= 0 or h <= 0:
        raise ValueError(f"Box {box} lies outside the {width}x{height} image")
    return image[y : y + h, x : x + w]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
