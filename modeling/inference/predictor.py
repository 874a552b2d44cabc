"""Batched facial-expression classification of face crops with a saved image classifier.

``pipeline("image-classification")`` preprocesses one image at a time. :class:`FERPredictor`
stacks crops of equal size and resizes, rescales and normalises them in a few torch calls
(bilinear with antialias, the resampling of the model's image processor), then runs the model
under ``torch.inference_mode()`` or through ONNX Runtime.

The arithmetic (``precision``) is chosen by the hardware unless forced (:func:`modeling.precision.
choose_inference_precision`): bf16 autocast on CUDA and on CPUs with bf16 units (AMX, AVX512-BF16), where it ran
2.47x ``pipeline()``; int8 dynamic quantization of the linear layers on other CPUs (AVX2-only EPYCs), where bf16 is
emulated and float32 left the predictor no faster than ``pipeline()`` (the ViT's matmuls are nearly all the time).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..cli import UsageError
from ..precision import (
    choose_inference_precision,
    cpu_has_bf16,  # noqa: F401  (re-exported: modeling.inference.predictor.cpu_has_bf16)
    int8_engine,
    int8_has_vnni,
    native_bf16_units,
)
from .faces import to_gray, to_rgb
from .vit_runtime import BILINEAR, RESAMPLE_MODES, as_pair, inspect_plain, load_plain_vit

logger = logging.getLogger(__name__)

# How the weights are run: "transformers" (AutoModelForImageClassification; any image classifier, Hub ids included),
# "plain" (modeling.inference.vit_runtime: a local ViT classifier without importing transformers, seconds less per
# process), or "auto" (plain where modeling.inference.vit_runtime.why_not_plain accepts the model, transformers
# elsewhere).
RUNTIMES = ("auto", "transformers", "plain")
# Faces run in both int8 and float32 to set the int8 close-call threshold (FERPredictor._recheck).
RECHECK_CALIBRATION_FACES = 8
# The faces after those whose share of close calls decides whether int8 is worth keeping, and the share above which
# float32 alone runs instead, by whether fbgemm has VNNI (modeling.precision.int8_has_vnni). int8 with
# re-runs costs i + r * f per face (i: int8, f: float32, r: share re-run), float32 alone f: int8 gains nothing once
# r > 1 - i/f. In process, 2 threads, the ViT-S and ViT-B presets at 224 px (bench/RESULTS.md): 0.42 and 0.49 on an
# AVX2-only EPYC, 0.67 and 0.74 on an EPYC with avx512_vnni; a share near the break-even costs little either way.
RECHECK_PROBE_FACES = 56
RECHECK_FLOAT32_SHARES = {"avx2": 0.45, "vnni": 0.65}


class NotAnImageClassifierError(ValueError):
    """The model directory or Hub id does not hold an image classifier."""


def _check_is_image_classifier(model: str | Path, cache_dir: str | None = None):
    """The model's config, after checking that it describes an image classifier with labelled classes."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    path = Path(model)
    if path.exists() and not (path / "config.json").is_file():
        raise NotAnImageClassifierError(f"{path} has no config.json: it is not a saved transformers model")
    try:
        config = AutoConfig.from_pretrained(str(model), cache_dir=cache_dir)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise NotAnImageClassifierError(f"{model}: cannot read a transformers config ({err})") from err
    architectures = list(getattr(config, "architectures", None) or [])
    if architectures and not any(a.endswith("ForImageClassification") for a in architectures):
        hint = (
            " Convert an MAE checkpoint with modeling.models.mae_to_vit.mae_to_classifier."
            if "MAE" in str(architectures)
            else ""
        )
        raise NotAnImageClassifierError(
            f"{model} holds a {', '.join(architectures)}, not an image classifier (*ForImageClassification).{hint}"
        )
    if config.model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        raise NotAnImageClassifierError(f"{model}: model type {config.model_type!r} has no image-classification head")
    return config


def quantize_linear_int8(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its ``nn.Linear`` layers, except the classification head, made int8 dynamically quantized
    (in place; torch's eager ``quantize_dynamic``): weights int8 per output channel, activations quantized at run time
    over each call's input (one image in :class:`FERPredictor`), products summed in int32 by fbgemm's integer kernels
    (VNNI where the CPU has it, AVX2 otherwise).

    In a ViT these layers (q/k/v, attention output, MLP) hold ~90 % of the FLOPs at 197 tokens. The head
    (``num_labels`` outputs, no FLOPs to speak of) stays float32, and so do the patch embedding (a convolution),
    attention products, LayerNorm and GELU. On the 3,573 FER+ test faces a trained 6 x 192 ViT (48 px) changed 5 labels
    (0.14 %) and its logits by at most 0.016 (their std: 1.65), one image per call; its FER+ test accuracy (majority
    protocol) was 36.56 % either way. Per-channel weights changed 0.17 % of the labels in batches of 256, per-tensor
    ones 0.20 %, at the same speed.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    num_labels = getattr(model, "num_labels", None) or getattr(getattr(model, "config", None), "num_labels", None)
    spec = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.out_features != num_labels
    }
    with warnings.catch_warnings():
        # torch announces that torch.ao.quantization moves to torchao; while it ships, it is the dependency-free int8
        # path. Where it is gone, modeling.precision.int8_engine() says so and "auto" keeps float32.
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions .* are deprecated")
        return quantize_dynamic(model, spec, inplace=True)


def onnx_is_quantized(path: str | Path) -> bool:
    """True when the ONNX graph quantizes its activations at run time (``modeling.inference.export --int8``)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(
        node.op_type in ("DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulInteger") for node in graph.node
    )


class FERPredictor:
    """Classifies face crops with a local model directory or Hub id.

    ``precision``: ``auto`` (default: bf16 autocast on CUDA or a CPU with bf16 units, int8 dynamic
    quantization on other CPUs), ``fp32``, ``bf16`` or ``int8``; ``bf16=True`` is the older spelling of
    ``precision="bf16"``. :attr:`precision` holds the arithmetic that runs and :attr:`precision_why` the
    sentence that says why.

    ``runtime``: ``transformers`` (default: ``AutoModelForImageClassification``, :attr:`model` is a transformers model;
    any image classifier, Hub ids included), ``plain`` (:mod:`modeling.inference.vit_runtime`: a local ViT classifier
    run in plain torch without importing transformers, which saves seconds per process; the same logits) or ``auto``
    (plain where :func:`~modeling.inference.vit_runtime.why_not_plain` accepts the model, transformers elsewhere;
    ``fer-predict``'s default). :attr:`runtime` and :attr:`runtime_why` say which one runs and why.

    ``recheck`` (torch int8 only, default True): faces whose int8 top-2 logit gap is too small for int8's error to
    keep their label run again in float32 (:meth:`_recheck`; :attr:`recheck_counts` says how many), so that the int8
    path gives float32's labels; a float32 copy of the model is kept for them. Where int8 turns out to be a close call
    on most faces, float32 alone runs instead, from the 65th face on (:attr:`float32_from`).

    ``onnx`` runs an exported ``.onnx`` file (see :mod:`modeling.inference.export`, ``--int8`` for a quantized one)
    with ONNX Runtime instead of PyTorch, on ``torch.get_num_threads()`` threads; labels and preprocessing
    still come from ``model``.

    A model whose config has ``grayscale_input: true`` (``run_finetune.py`` sets it for FER+, whose faces are
    grayscale) gets every crop converted to gray and replicated to 3 channels (:attr:`grayscale_input`), so that a
    colour photo reaches it as its training faces did; other models get the crops as given.
    """

    def __init__(
        self,
        model: str | Path,
        device: str | None = None,
        bf16: bool = False,
        onnx: str | Path | None = None,
        cache_dir: str | None = None,
        precision: str = "auto",
        runtime: str = "transformers",
        recheck: bool = True,
    ):
        if runtime not in RUNTIMES:
            raise UsageError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        spec, self.runtime_why = None, "transformers (asked for)"
        if runtime != "transformers":
            found = inspect_plain(model)
            if isinstance(found, str):
                if runtime == "plain":
                    raise NotAnImageClassifierError(f"{model}: cannot run without transformers: {found}")
                self.runtime_why = f"transformers ({found})"
            else:
                spec = found
                self.runtime_why = "plain torch ViT (modeling.inference.vit_runtime; transformers not imported)"
        self.runtime = "transformers" if spec is None else "plain"
        if spec is None:
            from transformers import AutoImageProcessor

            config = _check_is_image_classifier(model, cache_dir)
            try:
                self.processor = AutoImageProcessor.from_pretrained(str(model), cache_dir=cache_dir)
            except OSError as err:
                raise NotAnImageClassifierError(
                    f"{model} has no image processor (preprocessor_config.json): {err}"
                ) from err
        else:
            config, self.processor = spec.config, spec.processor
        self.labels: list[str] = [config.id2label[i] for i in range(config.num_labels)]
        if all(n == f"LABEL_{i}" for i, n in enumerate(self.labels)):
            logger.warning("%s has no class names in its config (id2label is LABEL_0..); label order unknown", model)
        self._read_preprocessing(self.processor)
        self.grayscale_input = bool(getattr(config, "grayscale_input", False))
        logger.info(
            "FERPredictor: %s",
            "grayscale input (the model was trained on gray faces): colour crops are converted to gray"
            if self.grayscale_input
            else "crops as given (colour kept)",
        )
        self.tokens = self._tokens(config)
        self.hidden = getattr(config, "hidden_size", None)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if bf16:
            if precision not in ("auto", "bf16"):
                raise UsageError(f"bf16=True contradicts precision={precision!r}")
            precision = "bf16"
        self.session = None
        self.model = None
        self._float_model: torch.nn.Module | None = None
        # int8 close calls (see _recheck): the largest int8 error per calibration face, the threshold they give,
        # the faces seen and the close calls re-run (recheck_counts).
        self._calibration_errors: list[float] = []
        self.recheck_margin: float | None = None
        self._faces_seen = self._close_calls = 0
        # where the probe faces after the calibration ones are mostly close calls: float32 alone from this face on
        self.float32_share: float | None = None  # set with the float32 copy (int8 with re-runs)
        self.float32_from: int | None = None
        self.float32_why: str | None = None
        self._probe_close = self._after_switch = 0
        if onnx is not None:
            import onnxruntime as ort

            if precision not in ("auto", "fp32"):
                raise UsageError(
                    f"precision {precision!r} does not apply to an ONNX file: its graph fixes the arithmetic "
                    "(python -m modeling.inference.export MODEL out.onnx --int8 writes an int8 one)"
                )
            if not Path(onnx).is_file():
                raise FileNotFoundError(f"ONNX file not found: {onnx}")

            providers = ["CPUExecutionProvider"]
            if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            # As many threads as torch (OMP_NUM_THREADS, fer-predict --threads) rather than ORT's own default, so that
            # both engines share a small machine the same way; one inter-op thread: the graph is a single chain.
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(onnx), options, providers=providers)
            self._onnx_input = self.session.get_inputs()[0].name
            self.precision = "onnx_int8" if onnx_is_quantized(onnx) else "onnx"
            self.precision_why = f"ONNX Runtime ({Path(onnx).name}, {self.session.get_providers()[0]})"
        else:
            units = native_bf16_units() if self.device.type == "cpu" else []
            ok = self.device.type == "cpu" and int8_engine() is not None
            self.precision, self.precision_why = choose_inference_precision(
                self.device.type, precision, units, ok, tokens=self.tokens, hidden=self.hidden
            )
            if spec is not None:
                self.model = load_plain_vit(model, spec)
            else:
                from transformers import AutoModelForImageClassification

                try:
                    self.model = AutoModelForImageClassification.from_pretrained(str(model), cache_dir=cache_dir)
                except (OSError, ValueError) as err:
                    raise NotAnImageClassifierError(f"{model}: cannot load an image classifier ({err})") from err
            self.model.eval().to(self.device)
            if self.precision == "int8":
                if recheck and len(self.labels) > 1:
                    self._float_model = copy.deepcopy(self.model)  # before quantizing: close calls re-run on it
                    self.float32_share = RECHECK_FLOAT32_SHARES["vnni" if int8_has_vnni() else "avx2"]
                quantize_linear_int8(self.model)
        # bf16 autocast: on CUDA, and on CPUs with bf16 matrix units (AMX / AVX512-BF16), where oneDNN runs
        # ViT matmuls about 3x faster than float32; elsewhere autocast would only add casts.
        self.bf16 = self.precision == "bf16"
        self.per_image = self.precision in ("int8", "onnx_int8")  # see logits()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_workers = 0
        logger.info("FERPredictor: %s; runtime: %s", self.precision_why, self.runtime_why)

    def _tokens(self, config) -> int | None:
        """Tokens per image of a ViT-like model (patches + CLS; :attr:`tokens`), None without ``patch_size``."""
        patch = as_pair(getattr(config, "patch_size", None))
        if patch is None or min(patch) < 1:
            return None
        return (self.size[0] // patch[0]) * (self.size[1] // patch[1]) + 1

    def _read_preprocessing(self, processor: Any) -> None:
        size = dict(getattr(processor, "size", None) or {})
        if "height" in size and "width" in size:
            self.size = (int(size["height"]), int(size["width"]))
        elif "shortest_edge" in size:
            # Square inputs: a face crop is nearly square, and FER models are trained on squares.
            self.size = (int(size["shortest_edge"]),) * 2
        else:
            raise NotAnImageClassifierError(f"Unsupported image processor size {size!r}")
        if getattr(processor, "do_center_crop", False):
            crop = processor.crop_size
            self.size = (int(crop["height"]), int(crop["width"]))
        self.do_resize = bool(getattr(processor, "do_resize", True))
        resample = getattr(processor, "resample", BILINEAR)
        resample = BILINEAR if resample is None else int(resample)
        if self.do_resize and resample not in RESAMPLE_MODES:
            logger.warning(
                "The image processor resamples with PIL code %d; FERPredictor resizes bilinearly instead (it "
                "implements bilinear and bicubic): scores may differ a little from the processor's",
                resample,
            )
        self.resample_mode = RESAMPLE_MODES.get(resample, "bilinear")
        self.rescale = float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 1.0
        do_norm = bool(getattr(processor, "do_normalize", True))
        mean = processor.image_mean if do_norm else [0.0, 0.0, 0.0]
        std = processor.image_std if do_norm else [1.0, 1.0, 1.0]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """``pixel_values [N, 3, H, W]`` float32 from uint8 crops (``[h, w]`` gray or ``[h, w, 3]`` RGB, any sizes).

        With :attr:`grayscale_input`, colour crops become gray (BT.601 luma, :func:`modeling.inference.faces.to_gray`)
        replicated to 3 channels, the form of the grayscale training faces.

        Crops of equal shape are resized together in one ``F.interpolate`` call, on uint8 in
        channels-last layout: torch's vectorised uint8 antialias kernel (the one torchvision's
        resize, hence the transformers image processor, uses) is much faster than float32 and
        rounds like the processor does.
        """
        out = torch.empty((len(images), 3, *self.size), dtype=torch.uint8)
        groups: dict[tuple[int, ...], list[int]] = {}
        arrays = [np.asarray(im) for im in images]
        for i, im in enumerate(arrays):
            if im.dtype != np.uint8:
                raise ValueError(f"Expected uint8 images, got {im.dtype} for image {i}")
        rgb = [to_rgb(to_gray(im) if self.grayscale_input else im) for im in arrays]
        for i, im in enumerate(rgb):
            groups.setdefault(im.shape, []).append(i)
        for shape, idx in groups.items():
            # [n, h, w, 3] -> [n, 3, h, w] view with channels-last strides, no copy
            x = torch.from_numpy(np.stack([rgb[i] for i in idx])).permute(0, 3, 1, 2)
            if self.do_resize and tuple(shape[:2]) != self.size:
                x = F.interpolate(x, size=self.size, mode=self.resample_mode, antialias=True, align_corners=False)
            elif tuple(shape[:2]) != self.size:
                raise ValueError(f"Image of size {shape[:2]} but the processor does not resize to {self.size}")
            out[idx] = x
        return (out.float() * self.rescale - self.mean) / self.std

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[N, num_labels]`` float32 logits for ``pixel_values [N, 3, H, W]``.

        The int8 paths run one image per forward pass: dynamic quantization scales each matmul input by its range,
        which over a batch would depend on the other faces in it (a face's label could change with the batch size
        or its neighbours in a folder). From about 64 tokens per image (``INT8_MIN_TOKENS``) one image at a time is
        about as fast per face as batches of 64 (0.9-1.7x their speed: the ViT-S preset at 65 to 197 tokens, 1 thread).
        """
        if self.float32_from is not None:  # int8 with re-runs gave up: float32 alone (see _recheck)
            self._faces_seen += len(pixel_values)
            self._after_switch += len(pixel_values)
            return self._float_logits(pixel_values)
        if self.per_image and len(pixel_values) > 1:
            logits = torch.cat(self._each_image(pixel_values))
        else:
            logits = self._logits(pixel_values)
        if self._float_model is not None:
            logits = self._recheck(pixel_values, logits)
        return logits

    @property
    def rechecks(self) -> bool:
        """True when int8 close calls are re-run in float32 (torch int8 with ``recheck=True``, the default)."""
        return self._float_model is not None

    @property
    def recheck_counts(self) -> dict[str, int]:
        """Faces seen by the int8 path with re-runs, and of them those run in float32: to set the threshold
        (``calibration``), as close calls (``close``) and after the switch to float32 alone (``after_switch``: from face
        :attr:`float32_from` on, see :meth:`_recheck`)."""
        return {
            "faces": self._faces_seen,
            "calibration": len(self._calibration_errors),
            "close": self._close_calls,
            "after_switch": self._after_switch,
        }

    def _recheck(self, pixel_values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """int8 logits with the close calls replaced by float32 ones, so that int8 keeps the float32 labels.

        The first ``RECHECK_CALIBRATION_FACES`` faces this predictor sees run in float32 as well: twice the largest
        int8 logit error among them becomes :attr:`recheck_margin`, and from then on every face whose int8 top-2
        logit gap is under it runs again in float32 (in one batch). A label can only differ from float32's where the
        int8 error moves the gap by more than the gap, and two logits each off by at most e move it by at most 2e.
        Measured on a 2-core AVX2 EPYC (FER+ faces, bench/RESULTS.md): the shipped model kept 98.5% of 1,500 float32
        labels in int8 alone and 100% with this, 18% of the faces re-run; a random ViT-S preset at 224 px 100% (20 of
        192 faces in float32, whole process 1.81x ``pipeline()`` against 1.94x without); a random ViT-B preset, whose
        top-2 gaps are mostly smaller than the int8 error, 88.5% and 100%, but with half of its faces re-run, slower
        than float32 alone (1.10x against 1.18x, whole process): hence the switch below. The faces are taken in the
        order given, whatever the batches (the calibration faces are the first ones overall), so results do not depend
        on the batch size; the first faces' scores are float32's.

        Where more than :attr:`float32_share` of the ``RECHECK_PROBE_FACES`` faces after the calibration ones were
        close calls (``RECHECK_FLOAT32_SHARES``: 45% on AVX2-only CPUs, 65% with VNNI, where int8 gains more), int8
        with that many re-runs costs more than float32 alone, which gives the same labels: from the next face on
        (:attr:`float32_from`, counted in input order whatever the batches) every face runs in float32 alone.
        """
        logits = logits.clone()  # an inference-mode tensor cannot be written in place outside inference mode
        start = self._faces_seen  # input position of logits[0]
        self._faces_seen += len(logits)
        first = min(len(logits), RECHECK_CALIBRATION_FACES - len(self._calibration_errors))
        if first > 0:
            reference = self._float_logits(pixel_values[:first])
            self._calibration_errors += (logits[:first] - reference).abs().amax(dim=1).tolist()
            logits[:first] = reference
            if len(self._calibration_errors) == RECHECK_CALIBRATION_FACES:
                self.recheck_margin = 2 * max(self._calibration_errors)
                logger.info(
                    "FERPredictor: int8 close calls (top-2 logit gap under %.4g, twice the largest int8 error on the "
                    "first %d faces) re-run in float32",
                    self.recheck_margin,
                    RECHECK_CALIBRATION_FACES,
                )
        if self.recheck_margin is None or len(logits) == first:
            return logits
        top2 = logits[first:].topk(2, dim=1).values
        close = top2[:, 0] - top2[:, 1] < self.recheck_margin
        position = start + first + torch.arange(len(close))
        probe_end = RECHECK_CALIBRATION_FACES + RECHECK_PROBE_FACES
        self._probe_close += int(close[position < probe_end].sum())
        if start < probe_end <= start + len(logits):  # the batch that ends the probe decides, once
            if self._probe_close > self.float32_share * RECHECK_PROBE_FACES:
                self.float32_from = probe_end
                self.float32_why = (
                    f"int8 was a close call on {self._probe_close} of the {RECHECK_PROBE_FACES} faces after the first "
                    f"{RECHECK_CALIBRATION_FACES}, over {self.float32_share:.0%}"
                )
                logger.info(
                    "FERPredictor: %s: with that many re-runs int8 is slower than float32 alone, which runs from face "
                    "%d on",
                    self.float32_why,
                    probe_end + 1,
                )
        after = position >= probe_end if self.float32_from is not None else torch.zeros_like(close)
        rerun = first + torch.nonzero(close | after).flatten()
        if len(rerun):
            logits[rerun] = self._float_logits(pixel_values[rerun])
        self._close_calls += int((close & ~after).sum())
        self._after_switch += int(after.sum())
        return logits

    def _float_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """float32 logits of the unquantized copy, in one batch on all threads (float32 scores change with the batch in
        their last bits only, 1e-7)."""
        return self._forward(self._float_model, pixel_values)

    @property
    def images_at_once(self) -> int:
        """How many images the int8 path runs at the same time (:meth:`_each_image`); 1 on the other paths."""
        on_cpu = self.per_image and self.session is None and self.device.type == "cpu"
        return max(1, torch.get_num_threads()) if on_cpu else 1

    def _each_image(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """One forward pass per image. With torch int8 on ``n`` > 1 CPU threads, ``n`` images at a time, one thread
        each: a single face's matmuls (197 rows at 224 px) are too small to keep two cores busy, and measured on a
        2-core AVX2 EPYC two faces at once on one thread each ran 1.3x one face on two threads, with the same logits
        (each image's arithmetic is unchanged). torch's thread count is restored afterwards."""
        workers = self.images_at_once
        if workers < 2:
            return [self._logits(x[None]) for x in pixel_values]
        if self._pool is None or self._pool_workers != workers:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool, self._pool_workers = ThreadPoolExecutor(workers, thread_name_prefix="FERPredictor"), workers

        def one(x: torch.Tensor) -> torch.Tensor:
            torch.set_num_threads(1)
            return self._logits(x[None])

        try:
            return list(self._pool.map(one, pixel_values))
        finally:
            torch.set_num_threads(workers)

    def _logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.session is not None:
            (logits,) = self.session.run(None, {self._onnx_input: pixel_values.numpy()})
            return torch.from_numpy(logits).float()
        return self._forward(self.model, pixel_values)

    def _forward(self, model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = pixel_values.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = model(x) if self.runtime == "plain" else model(pixel_values=x).logits
            return logits.float().cpu()

    def predict_proba(self, images: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """``[N, num_labels]`` class probabilities (softmax) for uint8 face crops."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        probs = [np.zeros((0, len(self.labels)), np.float32)]
        for start in range(0, len(images), batch_size):
            pixel_values = self.preprocess(images[start : start + batch_size])
            probs.append(torch.softmax(self.logits(pixel_values), dim=-1).numpy())
        return np.concatenate(probs)

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 64) -> list[dict[str, Any]]:
        """Per crop: ``{"label", "score", "scores": {class name: probability}}``."""
        results = []
        for p in self.predict_proba(images, batch_size):
            top = int(p.argmax())
            scores = {name: round(float(v), 6) for name, v in zip(self.labels, p)}
            results.append({"label": self.labels[top], "score": round(float(p[top]), 6), "scores": scores})
        return results
