"""Face detection behind a small interface, and face cropping.

The default detector is OpenCV's frontal-face Haar cascade (Viola and Jones 2001), which
opencv-python(-headless) 4.x ships under ``cv2.data.haarcascades`` (5.x ships none, NOTES #13).
It is fast and offline but misses profiles and small faces; a better detector plugs in by
subclassing :class:`FaceDetector`. Images are ``uint8`` numpy arrays, ``[H, W]`` gray or
``[H, W, 3]`` RGB; boxes are ``(x, y, w, h)`` in pixels.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

HAAR_FRONTAL_FACE = "haarcascade_frontalface_default.xml"


class FaceDetector(ABC):
    """Finds faces in one image. Subclasses implement :meth:`detect`."""

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Box]:
        """Boxes ``(x, y, w, h)`` of the faces in ``image`` (``[H, W]`` or ``[H, W, 3]`` RGB uint8), largest first."""

    def __call__(self, image: np.ndarray) -> list[Box]:
        return self.detect(image)


class HaarFaceDetector(FaceDetector):
    """OpenCV Haar cascade detector.

    ``scale_factor``, ``min_neighbors`` and ``min_size`` are ``detectMultiScale``'s; the
    defaults are OpenCV's usual ones for photos (a face below 30 px is too small to classify).
    """

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: tuple[int, int] = (30, 30),
        cascade_path: str | Path | None = None,
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
        self.cascade = cv2.CascadeClassifier(str(cascade_path))
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV could not load the Haar cascade {cascade_path}")
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be > 1, got {scale_factor}")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = (int(min_size[0]), int(min_size[1]))

    def detect(self, image: np.ndarray) -> list[Box]:
        gray = to_gray(image)
        found = self.cascade.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=self.min_size
        )
        boxes = [tuple(int(v) for v in b) for b in (found if len(found) else [])]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        logger.debug("Haar cascade found %d face(s) in a %s image", len(boxes), gray.shape)
        return boxes  # type: ignore[return-value]


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
