"""Which arithmetic a run uses: bf16 autocast where the hardware has bf16 units, float32 or int8 elsewhere.

CPUs of the same machine kind differ (NOTES #23): Intel Xeons with AMX and recent AMD EPYCs with AVX512-BF16 run
bf16 matmuls natively (measured here: 3.3x the fp32 rate on an EPYC with ``avx512_bf16``), while an AVX2-only EPYC
emulates them about 250x slower than fp32. So on CPU the default is decided by the CPU, not by a flag. Training
falls back to float32 there; inference to int8 dynamic quantization of the linear layers, which every x86 CPU with
AVX2 runs with integer dot products (fbgemm), and which keeps the float32 labels (``modeling.inference.predictor``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .cli import UsageError

logger = logging.getLogger(__name__)

CPU_PRECISIONS = ("auto", "bf16", "fp32")
INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "int8")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# Integer dot-product units, fastest first; fbgemm's int8 GEMM needs AVX2 at least (vpmaddubsw), VNNI fuses its steps.
INT8_CPU_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx2")
FP32_HINT = "; --precision fp32 for float32"
# The int8 predictor runs one image per forward pass (batch-independent scores, modeling.inference.predictor): below
# about 64 tokens per image, or 384 channels, its matmuls are too small to gain. Measured on 2-core EPYCs with torch
# capped at AVX2 (bench/inference.py --emulate_avx2): the ViT-S preset (384 wide) at 65, 145 and 197 tokens ran
# 1.7-2.1x float32 (2.9x and more with the CPU's VNNI); 6 x 192 ViTs ran slower than float32 in int8: 0.8-0.9x at 37
# tokens (48 px, patch 8, 1 thread) and 0.81x at 65 tokens (the shipped model, 48 px, patch 6, 2 threads;
# results/inference_avx2.json).
INT8_MIN_TOKENS = 64
INT8_MIN_HIDDEN = 384


def cpu_has_bf16() -> bool:
    """True when oneDNN can run bf16 matmuls natively on this CPU (AMX or AVX512-BF16)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cpu_flags(cpuinfo: str | Path) -> set[str] | None:
    """The feature flags of ``/proc/cpuinfo``; None where the file cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return flags


def cpu_bf16_units(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The bf16 flags (``amx_bf16``, ``avx512_bf16``) this CPU reports; empty where it has none or the file is absent
    (not Linux), in which case oneDNN's own check decides."""
    flags = _cpu_flags(cpuinfo)
    if flags is None:
        return ["onednn_bf16"] if cpu_has_bf16() else []
    return [f for f in BF16_CPU_FLAGS if f in flags]


def native_bf16_units() -> list[str]:
    """:func:`cpu_bf16_units` where oneDNN will use them in this process, else empty.

    The two differ only under an instruction-set cap such as ``ONEDNN_MAX_CPU_ISA=AVX2`` (how ``bench/inference.py
    --emulate_avx2`` imitates an AVX2-only CPU): the flags are still in ``/proc/cpuinfo``, but bf16 would be emulated.
    """
    return cpu_bf16_units() if cpu_has_bf16() else []


def cpu_int8_units(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The integer dot-product flags this CPU reports (``amx_int8``, ``avx512_vnni``, ``avx_vnni``, ``avx2``), for
    reports: int8 inference speed depends on them. Empty where unknown (not Linux)."""
    flags = _cpu_flags(cpuinfo) or set()
    return [f for f in INT8_CPU_FLAGS if f in flags]


def int8_has_vnni(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True where fbgemm's int8 matmuls use VNNI (``avx512_vnni``, which AMX CPUs have too): one instruction per
    u8 x s8 dot product where AVX2 takes three, so int8 gains more over float32. False on AVX2-only CPUs and under
    ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` (how ``bench/inference.py --emulate_avx2`` imitates one)."""
    capped = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS", "").strip().upper() == "AVX2"
    return not capped and "avx512_vnni" in (_cpu_flags(cpuinfo) or set())


def int8_engine() -> str | None:
    """torch's quantized engine for int8 dynamic quantization on this CPU (``x86`` or ``fbgemm``: x86-64 with AVX2 at
    least), or None where there is none or torch no longer ships ``torch.ao.quantization``. ARM's ``qnnpack`` is left
    out: the per-channel int8 path is neither measured nor tested there."""
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return None
    if torch.backends.quantized.engine in ("x86", "fbgemm"):
        return torch.backends.quantized.engine
    return next((e for e in ("x86", "fbgemm") if e in torch.backends.quantized.supported_engines), None)


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (``AMD EPYC``, ``Intel(R) Xeon(R) ...``), for reports: figures depend on it."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def choose_training_precision(
    device_type: str, cpu_precision: str, bf16_flag: bool, bf16_units: list[str]
) -> tuple[bool, str]:
    """``(bf16, why)``: whether to train in bf16 autocast, and the sentence the log gives for it.

    On an accelerator ``--bf16`` decides, as the recipe says. On CPU ``cpu_precision`` decides: ``auto`` -> bf16
    where the CPU has bf16 units (``bf16_units``), float32 elsewhere (``--bf16 true`` asks for bf16 in any case);
    ``bf16``/``fp32`` force one.
    """
    if cpu_precision not in CPU_PRECISIONS:
        raise ValueError(f"cpu_precision must be one of {CPU_PRECISIONS}, got {cpu_precision!r}")
    if device_type != "cpu":
        return bf16_flag, f"{'bf16 autocast' if bf16_flag else 'float32'} on {device_type} (--bf16 {bf16_flag})"
    units = ", ".join(bf16_units)
    if cpu_precision == "fp32":
        if bf16_flag:
            raise ValueError("--bf16 true contradicts --cpu_precision fp32")
        return False, "float32 on CPU (--cpu_precision fp32)"
    if cpu_precision == "bf16" or bf16_flag:
        if not bf16_units:
            logger.warning("bf16 asked for on a CPU without bf16 units: it is emulated, about 250x slower than fp32")
        return True, f"bf16 autocast on CPU (asked for; bf16 units: {units or 'none'})"
    if bf16_units:
        return True, f"bf16 autocast on CPU (bf16 units: {units}; --cpu_precision fp32 to turn it off)"
    return False, "float32 on CPU (no bf16 units: bf16 would be emulated, far slower)"


def apply_training_precision(training_args, cpu_precision: str) -> str:
    """Sets ``training_args.bf16`` from :func:`choose_training_precision` for the device the Trainer will use and
    returns the sentence that says why (the scripts log it and save it with their results)."""
    device_type = training_args.device.type
    units = cpu_bf16_units() if device_type == "cpu" else []
    bf16, why = choose_training_precision(device_type, cpu_precision, bool(training_args.bf16), units)
    training_args.bf16 = bf16
    # TrainingArguments derives the Accelerator's mixed precision once, in __post_init__: follow the new choice.
    if bf16:
        training_args.mixed_precision = "bf16"
    elif training_args.mixed_precision == "bf16":
        training_args.mixed_precision = "no"
    return why


def choose_inference_precision(
    device_type: str,
    precision: str,
    bf16_units: list[str],
    int8_ok: bool = True,
    tokens: int | None = None,
    hidden: int | None = None,
) -> tuple[str, str]:
    """``(arithmetic, why)``: ``"fp32"``, ``"bf16"`` (autocast) or ``"int8"`` (dynamic quantization of the linear
    layers), and the sentence the log gives for it.

    ``auto``: bf16 on CUDA and on CPUs with bf16 units (``bf16_units``); int8 on other CPUs where torch has an int8
    engine (``int8_ok``) and the model has at least :data:`INT8_MIN_TOKENS` tokens per image (``tokens``) and
    :data:`INT8_MIN_HIDDEN` channels (``hidden``), since float32 there leaves the predictor no faster than
    ``pipeline()``; float32 elsewhere (``None``: not known, not a reason for float32).
    ``fp32``/``bf16``/``int8`` force one; bf16 on a CPU without bf16 units and int8 without an engine fall back to
    float32 with a warning (both would be slower than float32, or not run); int8 off the CPU is refused
    (:class:`~modeling.cli.UsageError`, a ``ValueError``).
    """
    if precision not in INFERENCE_PRECISIONS:
        raise UsageError(f"precision must be one of {INFERENCE_PRECISIONS}, got {precision!r}")
    if device_type != "cpu":
        if precision == "int8":
            raise UsageError(f"int8 dynamic quantization runs on CPU only; use bf16 or fp32 on {device_type}")
        if precision == "fp32":
            return "fp32", f"float32 on {device_type} (--precision fp32)"
        if device_type == "cuda":
            return "bf16", "bf16 autocast on cuda" + (" (asked for)" if precision == "bf16" else FP32_HINT)
        if precision == "bf16":
            logger.warning("bf16 autocast needs CUDA or a CPU with bf16 units; running in float32 on %s", device_type)
        return "fp32", f"float32 on {device_type}"
    units = ", ".join(bf16_units)
    if precision == "fp32":
        return "fp32", "float32 on CPU (--precision fp32)"
    if precision == "bf16":
        if bf16_units:
            return "bf16", f"bf16 autocast on CPU (asked for; bf16 units: {units})"
        logger.warning("bf16 asked for on a CPU without bf16 units: it would be emulated, far slower; running float32")
        return "fp32", "float32 on CPU (bf16 asked for, but this CPU has no bf16 units: it would be emulated)"
    if precision == "int8":
        if int8_ok:
            return "int8", "int8 dynamic quantization of the linear layers on CPU (asked for)"
        logger.warning("int8 asked for, but torch has no int8 engine (torch.ao.quantization) here; running float32")
        return "fp32", "float32 on CPU (int8 asked for, but torch has no int8 engine here)"
    if bf16_units:
        return "bf16", f"bf16 autocast on CPU (bf16 units: {units}){FP32_HINT}"
    if not int8_ok:
        return "fp32", "float32 on CPU (no bf16 units, and torch has no int8 engine here)"
    if tokens is not None and tokens < INT8_MIN_TOKENS:
        return "fp32", f"float32 on CPU (no bf16 units; int8 gains nothing at {tokens} tokens per image)"
    if hidden is not None and hidden < INT8_MIN_HIDDEN:
        return "fp32", f"float32 on CPU (no bf16 units; int8 gains nothing at {hidden} channels)"
    return "int8", f"int8 dynamic quantization of the linear layers on CPU (no bf16 units){FP32_HINT}"
