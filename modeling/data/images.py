"""Image checks and conversions shared by the builders.

Every image a builder stores is fully decoded once here, so a corrupt or truncated file is found
at preparation time rather than in the middle of a training epoch. Stored bytes are the original
file when it already decodes to RGB or 8-bit grayscale (the ``Image(mode="RGB")`` feature turns
grayscale into RGB when read); any other mode (RGBA, CMYK, palette, 16-bit, float) and any crop
or alignment is re-encoded as an RGB PNG (lossless; JPEG on request).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# Modes that PIL's convert("RGB") maps without loss of meaning; everything else goes through to_rgb.
_KEEP_MODES = ("RGB", "L")
_EYE_RIGHT = slice(36, 42)  # iBUG 68-point scheme: the subject's right eye, on the image's left
_EYE_LEFT = slice(42, 48)


class ImageDecodeError(ValueError):
    """The bytes are not a readable image (unknown format, truncated or corrupt)."""


@dataclass
class CheckedImage:
    image: Image.Image  # fully decoded, native mode
    data: bytes  # the original file bytes


def decode(data: bytes) -> CheckedImage:
    """Decode ``data`` completely; raise :class:`ImageDecodeError` with PIL's reason if it fails."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... depending on the plugin
        raise ImageDecodeError(f"{type(e).__name__}: {e}") from e
    if image.width == 0 or image.height == 0:
        raise ImageDecodeError(f"empty image ({image.width}x{image.height})")
    return CheckedImage(image, data)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any PIL mode: 16-bit/32-bit/float scaled to 8 bits, alpha composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        # PIL's convert clips these to 255 instead of scaling; scale by the type's range ourselves.
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if (mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        if arr.max(initial=0) > 65535:
            top = float(arr.max())
        arr = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([arr] * 3, axis=-1), "RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def encode(image: Image.Image, image_format: str = "png") -> bytes:
    """RGB ``image`` as PNG (lossless, the default) or JPEG (quality 95) bytes."""
    buffer = io.BytesIO()
    rgb = to_rgb(image)
    if image_format.lower() == "png":
        rgb.save(buffer, format="PNG", compress_level=3)
    elif image_format.lower() in ("jpeg", "jpg"):
        rgb.save(buffer, format="JPEG", quality=95)
    else:
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    return buffer.getvalue()


def stored(checked: CheckedImage, path: str, image_format: str = "png") -> dict:
    """The ``{"bytes", "path"}`` value of the ``image`` column: original bytes when no conversion is needed."""
    if checked.image.mode in _KEEP_MODES:
        return {"bytes": checked.data, "path": path}
    return {"bytes": encode(checked.image, image_format), "path": path}


def crop_box(image: Image.Image, x: float, y: float, width: float, height: float) -> Image.Image:
    """Pixels inside the box ``[x, x + width) x [y, y + height)``, clipped to the image; empty boxes raise."""
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(image.width, int(round(x + width))), min(image.height, int(round(y + height)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {(x, y, width, height)} lies outside the {image.width}x{image.height} image")
    return image.crop((x0, y0, x1, y1))


def eye_angle(landmarks: np.ndarray) -> tuple[tuple[float, float], float]:
    """Eye midpoint ``(x, y)`` and the eye line's angle in degrees (y down) from 68 landmarks ``[68, 2]``."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    right, left = pts[_EYE_RIGHT].mean(axis=0), pts[_EYE_LEFT].mean(axis=0)
    center = (right + left) / 2.0
    angle = math.degrees(math.atan2(left[1] - right[1], left[0] - right[0]))
    return (float(center[0]), float(center[1])), angle


def align_eyes(image: Image.Image, landmarks: np.ndarray) -> Image.Image:
    """Rotate ``image`` about the eye midpoint so that the eye line is horizontal (same size, RGB).

    The rotation keeps the midpoint fixed, so a face box given in the original image still frames
    the face afterwards; crop it with :func:`crop_box`.
    """
    center, angle = eye_angle(landmarks)
    # cv2: a positive angle turns the picture counter-clockwise on screen (y down), which lifts a
    # right-hand eye that sits lower (positive atan2 angle) up to the level of the other one.
    matrix = cv2.getRotationMatrix2D(center, angle, 1.0)
    arr = np.asarray(to_rgb(image))
    out = cv2.warpAffine(
        arr, matrix, (arr.shape[1], arr.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return Image.fromarray(out, "RGB")
