"""The files of ``fer-predict``: photos and videos in, annotated copies out.

:func:`expand_inputs` lists the files of the command line (folders searched recursively), :func:`read_image` and
:func:`iter_video_frames` read them. An annotated copy has every face boxed and labelled, in the photo's own format,
at a size worth keeping; ``fer-predict --annotate DIR`` and the demo page draw it with :func:`draw_faces`. The copy's longer side is at most
``ANNOTATED_MAX_SIDE`` (2048 px: a 6000x4000 photo gave a 13 MB PNG at full size, and a screen shows 2048 px at most),
the boxes are scaled to it, and the label's font and the box's line follow the size of the copy, not only of the face,
so that a label is as readable on a 350 px photo as on a phone's 6000x4000 one (:func:`label_style`). :func:`save_copy`
writes the input's format (a JPEG stays a JPEG, at quality 90; a PNG a PNG) and :func:`copy_names` names the copies
after the inputs, folders mirrored, a parent folder's name added only where two inputs share a name.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
ANNOTATED_MAX_SIDE = 2048
# JPEG and WebP quality: Pillow's default 75 blurs the label's edges; 90 keeps them sharp at about 1/10 of the PNG.
QUALITY = 90
BOX_COLOR = (0, 255, 0)  # RGB
TEXT_COLOR = (0, 0, 0)
# Video frames are photos of a lossy stream: JPEG, like the photos of a phone.
FRAME_FORMAT, FRAME_SUFFIX = "JPEG", ".jpg"


def media_files(folder: Path) -> Iterator[Path]:
    """The images and videos under ``folder``, recursively, in file-system order."""
    media = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    return (p for p in folder.rglob("*") if p.suffix.lower() in media and p.is_file())


def expand_inputs(inputs: Sequence[str]) -> list[tuple[Path, PurePath]]:
    """``(file, its name)``: files as given, named by their file name; folders expanded to their images and videos
    (sorted, recursive), each named by its path under the folder (the name of its annotated copy, :func:`copy_bases`)."""
    paths: list[tuple[Path, PurePath]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(media_files(path))
            paths.extend((p, PurePath(p.relative_to(path))) for p in found)
        else:
            paths.append((path, PurePath(path.name)))
    return paths


def read_image(path: Path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB, EXIF orientation applied; raises ``OSError``/``ValueError`` if unreadable."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def iter_video_frames(path: Path, every_n: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame index, RGB frame)`` for every ``every_n``-th frame; raises ``OSError`` if the video cannot be read."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise OSError("OpenCV cannot open it as a video")
        index, decoded = 0, 0
        while True:
            ok = cap.grab()
            if not ok:
                break
            if index % every_n == 0:
                ok, frame = cap.retrieve()
                if ok:
                    decoded += 1
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
        if decoded == 0:
            raise OSError("no frame could be decoded")
    finally:
        cap.release()


def label_style(height: int, width: int, box: int) -> tuple[int, int]:
    """``(font size, box line width)`` in pixels for a face whose box side is ``box`` on a ``height`` x ``width`` copy.

    The image's shorter side sets the range: the font between 1/64 and 1/28 of it (at least 13 px, which stays
    readable), the line up to 1/250 of it (at least 2 px: 1 px vanished on a 350 px photo); within it, the box (the
    font 3/10 of its side, the line 1/20), so that a crowd's small faces get labels that do not cover each other.
    """
    short = min(height, width)
    small, large = max(13, round(short / 64)), max(13, round(short / 28))
    font = min(large, max(small, round(0.3 * box)))
    line = max(2, min(round(short / 250), round(box / 20)))
    return font, line


@functools.lru_cache(maxsize=8)
def _font(size: int):
    """DejaVu Sans Bold, which matplotlib (a dependency) ships, found without importing matplotlib; else Pillow's
    own font."""
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def draw_faces(
    image: np.ndarray, faces: Sequence[dict[str, Any]], max_side: int | None = ANNOTATED_MAX_SIDE
) -> np.ndarray:
    """An ``[h, w, 3]`` uint8 RGB copy of ``image`` (``[H, W]`` or ``[H, W, 3]``), scaled down so that its longer side
    is at most ``max_side`` (None: full size), with each face's ``box`` (``[x, y, w, h]`` in ``image``'s pixels)
    drawn and ``label score`` written above it (inside, at the top edge of the photo)."""
    from PIL import Image, ImageDraw

    from .faces import shrink_for_detection, to_rgb

    rgb, sx, sy = shrink_for_detection(to_rgb(image), max_side)  # the same scaled-down copy the detector searches
    canvas = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(canvas)
    for face in faces:
        bx, by, bw, bh = face["box"]
        x, y, w, h = round(bx * sx), round(by * sy), round(bw * sx), round(bh * sy)
        font_size, line = label_style(canvas.height, canvas.width, min(w, h))
        font, pad = _font(font_size), max(1, font_size // 6)
        draw.rectangle((x, y, x + max(w, 1) - 1, y + max(h, 1) - 1), outline=BOX_COLOR, width=line)
        text = f"{face['label']} {face['score']:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        tx = max(0, min(x, canvas.width - tw))  # keep the label on the photo
        ty = y - th if y - th >= 0 else y  # above the box, else inside its top
        draw.rectangle((tx, ty, tx + tw - 1, ty + th - 1), fill=BOX_COLOR)
        draw.text((tx + pad - left, ty + pad - top), text, fill=TEXT_COLOR, font=font)
    return np.asarray(canvas)


def copy_format(name: str | PurePath) -> tuple[str, str]:
    """``(Pillow format, suffix)`` of the annotated copy of the file ``name``: its own where Pillow writes it, else
    PNG with ``.png`` added (``scan.xyz`` -> ``scan.xyz.png``)."""
    from PIL import Image

    suffix = PurePath(name).suffix
    Image.init()
    fmt = Image.registered_extensions().get(suffix.lower())
    if fmt is not None and fmt in Image.SAVE:
        return fmt, suffix
    return "PNG", suffix + ".png"


def save_copy(image: np.ndarray, path: str | Path, fmt: str) -> Path:
    """Writes the ``[H, W, 3]`` uint8 RGB ``image`` to ``path`` in the Pillow format ``fmt`` (JPEG and WebP at
    ``QUALITY``, TIFF with LZW compression); makes its folder."""
    from PIL import Image

    options: dict[str, Any] = {"JPEG": {"quality": QUALITY}, "WEBP": {"quality": QUALITY}}.get(fmt, {})
    if fmt == "TIFF":
        options = {"compression": "tiff_lzw"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format=fmt, **options)
    return path


def copy_name(base: PurePath, name: str | PurePath, frame: int | None = None) -> PurePath:
    """The copy of the file ``name`` (of the video frame ``frame``) from its ``base`` (:func:`copy_bases`):
    ``base`` with the suffix of :func:`copy_format`, or ``base_f000120.jpg`` for frame 120 of a video."""
    if frame is None:
        return base.with_name(base.name + copy_format(name)[1])
    return base.with_name(f"{base.name}_f{frame:06d}{FRAME_SUFFIX}")


def copy_bases(inputs: Sequence[tuple[Path, PurePath, bool]]) -> dict[Path, PurePath]:
    """Where the annotated copies of each ``(file, its name, whether it is a video)`` go, relative to the annotate
    folder and without suffix (:func:`copy_name` adds it). A file's name is its path under the folder given on the
    command line, or its file name when the file itself was given: copies mirror the folders.

    Where different files would get the same copy (compared case-insensitively, as on macOS and Windows file
    systems), each of them gets the names of its nearest parent folders added to its stem, as few as tell them apart:
    ``a/photo.jpg`` and ``b/photo.jpg`` become ``photo-a.jpg`` and ``photo-b.jpg``; files of one folder that differ
    only by suffix or case get their suffix, then a number. The same file given twice keeps one name.
    """
    first: dict[Path, tuple[PurePath, bool]] = {}
    for path, name, video in inputs:
        first.setdefault(Path(path).resolve(), (PurePath(name), video))
    bases = {path: name.with_name(name.stem) for path, (name, _) in first.items()}
    groups: dict[str, list[Path]] = {}
    for path, (name, video) in first.items():
        key = str(copy_name(bases[path], name, 0 if video else None)).lower()
        groups.setdefault(key, []).append(path)
    for paths in (g for g in groups.values() if len(g) > 1):
        parents = {path: [p.name for p in path.parents if p.name] for path in paths}
        candidates = [{path: "-".join(parents[path][:depth]) for path in paths} for depth in range(1, 32)]
        candidates.append({path: first[path][0].suffix.lstrip(".") for path in paths})
        tags = next((t for t in candidates if len({v.lower() for v in t.values()}) == len(paths)), None)
        tags = tags or {path: str(i) for i, path in enumerate(sorted(paths), start=1)}
        for path in paths:
            bases[path] = bases[path].with_name(f"{bases[path].name}-{tags[path]}")
    return {path: bases[Path(path).resolve()] for path, _, _ in inputs}
