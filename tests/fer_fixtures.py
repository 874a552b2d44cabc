"""Test helpers: RAF-DB and AffectNet folders in the owners' exact file formats, made of real FER+ faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# RAF-DB label per line: 1..7; two of each class in train, one in test.
RAFDB_TRAIN = [1, 2, 3, 4, 5, 6, 7] * 2
RAFDB_TEST = [1, 2, 3, 4, 5, 6, 7]


def rgb_face(face: np.ndarray, size: int) -> Image.Image:
    return Image.fromarray(face).convert("RGB").resize((size, size), Image.BILINEAR)


def write_rafdb(root: Path, faces: np.ndarray) -> Path:
    """``EmoLabel/list_patition_label.txt`` + ``Image/aligned/*_aligned.jpg`` (100x100) + ``Image/original/*.jpg``."""
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    (root / "Image" / "original").mkdir(parents=True)
    lines, k = [], 0
    for split, labels in (("train", RAFDB_TRAIN), ("test", RAFDB_TEST)):
        for i, label in enumerate(labels, start=1):
            name = f"{split}_{i:05d}"
            rgb_face(faces[k], 100).save(root / "Image" / "aligned" / f"{name}_aligned.jpg", quality=95)
            rgb_face(faces[k], 120 + i).save(root / "Image" / "original" / f"{name}.jpg", quality=95)
            lines.append(f"{name}.jpg {label}\n")
            k += 1
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(lines))
    return root


# AffectNet rows: (expression, valence, arousal); 0..7 emotions, 8..10 none/uncertain/non-face.
AFFECTNET_TRAIN = [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 8, 9, 10]
AFFECTNET_VAL = [0, 1, 2, 3, 4, 5, 6, 7]
HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"


def landmarks_text(points: np.ndarray) -> str:
    return ";".join(f"{v:.2f}" for v in points.reshape(-1))


def face_landmarks(x: int, y: int, w: int, h: int) -> np.ndarray:
    """68 plausible points in the box, eyes level (36-41 left of image, 42-47 right)."""
    pts = np.zeros((68, 2))
    pts[:, 0] = x + w * np.linspace(0.1, 0.9, 68)
    pts[:, 1] = y + h * 0.7
    pts[36:42] = (x + 0.3 * w, y + 0.4 * h)
    pts[42:48] = (x + 0.7 * w, y + 0.4 * h)
    return pts


def write_affectnet_manual(root: Path, faces: np.ndarray) -> dict[str, list[tuple]]:
    """The manual-annotation release; returns per split the rows (path, box, expression, valence, arousal)."""
    rng = np.random.default_rng(0)
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    written: dict[str, list[tuple]] = {}
    k = 0
    for split, csv_name, expressions, header in (
        ("train", "training.csv", AFFECTNET_TRAIN, True),
        ("validation", "validation.csv", AFFECTNET_VAL, False),  # the release's validation.csv has no header
    ):
        lines, rows = [HEADER] if header else [], []
        for i, expression in enumerate(expressions):
            sub = f"{100 + i % 3}/{split}_{i:03d}.jpg"
            canvas = (rng.random((130, 170, 3)) * 255).astype(np.uint8)
            x, y, side = int(rng.integers(0, 60)), int(rng.integers(0, 40)), int(rng.integers(60, 90))
            canvas[y : y + side, x : x + side] = np.asarray(rgb_face(faces[k], side))
            path = root / "Manually_Annotated_Images" / sub
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(canvas).save(path, quality=95)
            valence, arousal = round(float(rng.uniform(-1, 1)), 6), round(float(rng.uniform(-1, 1)), 6)
            lm = landmarks_text(face_landmarks(x, y, side, side))
            lines.append(f"{sub},{x},{y},{side},{side},{lm},{expression},{valence},{arousal}\n")
            rows.append((path, (x, y, side, side), expression, valence, arousal))
            k += 1
        (lists / csv_name).write_text("".join(lines))
        written[split] = rows
    return written


def write_affectnet_cropped(root: Path, faces: np.ndarray) -> dict[str, list[tuple]]:
    """The cropped release: ``{train,val}_set/images/N.jpg`` + ``annotations/N_{exp,val,aro,lnd}.npy``."""
    written: dict[str, list[tuple]] = {}
    k = 0
    for split, folder, expressions in (
        ("train", "train_set", AFFECTNET_TRAIN[:8]),
        ("validation", "val_set", AFFECTNET_VAL),
    ):
        (root / folder / "images").mkdir(parents=True)
        (root / folder / "annotations").mkdir(parents=True)
        rows = []
        for i, expression in enumerate(expressions):
            n = str(i * 7 + 3)
            path = root / folder / "images" / f"{n}.jpg"
            rgb_face(faces[k], 112).save(path, quality=95)
            ann = root / folder / "annotations"
            # the release stores each value as a numpy string scalar
            np.save(ann / f"{n}_exp.npy", np.array(str(expression)))
            np.save(ann / f"{n}_val.npy", np.array(f"{0.1 * i:.3f}"))
            np.save(ann / f"{n}_aro.npy", np.array(f"{-0.1 * i:.3f}"))
            np.save(ann / f"{n}_lnd.npy", face_landmarks(0, 0, 112, 112).reshape(-1))
            rows.append((path, expression))
            k += 1
        written[split] = rows
    return written
