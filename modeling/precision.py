"""Which arithmetic a run uses: bf16 autocast where the hardware has bf16 units, float32 elsewhere.

CPUs of the same machine kind differ (NOTES #23): Intel Xeons with AMX and recent AMD EPYCs with AVX512-BF16 run
bf16 matmuls natively (measured here: 3.3x the fp32 rate on an EPYC with ``avx512_bf16``), while an AVX2-only EPYC
emulates them about 250x slower than fp32. So on CPU the default is decided by the CPU, not by a flag.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

CPU_PRECISIONS = ("auto", "bf16", "fp32")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_bf16() -> bool:
    """True when oneDNN can run bf16 matmuls natively on this CPU (AMX or AVX512-BF16)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_bf16_units(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The bf16 flags (``amx_bf16``, ``avx512_bf16``) this CPU reports; empty where it has none or the file is absent
    (not Linux), in which case oneDNN's own check decides."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ["onednn_bf16"] if cpu_has_bf16() else []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return [f for f in BF16_CPU_FLAGS if f in flags]


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
