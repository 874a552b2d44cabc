"""Export a saved classifier to ONNX with a dynamic batch axis, checked against PyTorch.

    python -m modeling.inference.export MODEL_DIR model.onnx [--opset 17]
    python -m modeling.inference.export MODEL_DIR model_int8.onnx --int8   # + ONNX Runtime's dynamic int8 quantization

Uses torch's TorchScript-based exporter (``dynamo=False``): the default dynamo exporter of
torch >= 2.9 needs ``onnxscript``, which this project does not depend on. The model is loaded
with eager attention, whose ops export to plain ONNX. After export the ONNX Runtime logits are
compared with PyTorch's on random inputs at two batch sizes; the max abs difference is printed.
With ``--int8`` the MatMuls of the exported graph, but the classifier's, get int8 weights (per
output channel) and activations quantized at run time, as ``fer-predict --precision int8`` does in
PyTorch; the difference is then that of the quantization (default tolerance 0.1), not of the export.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..cli import plain_text, require_model, run_main, user_errors
from .predictor import NotAnImageClassifierError, _check_is_image_classifier

logger = logging.getLogger(__name__)


class _LogitsOnly(torch.nn.Module):
    """``pixel_values [N, 3, H, W]`` -> ``logits [N, C]`` (the HF output dataclass does not trace)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def load_for_export(model_dir: str | Path) -> torch.nn.Module:
    from transformers import AutoModelForImageClassification

    _check_is_image_classifier(model_dir)
    model = AutoModelForImageClassification.from_pretrained(str(model_dir), attn_implementation="eager")
    return model.eval()


def export_onnx(model_dir: str | Path, out_path: str | Path, opset: int = 17) -> Path:
    """Writes ``out_path`` (input ``pixel_values``, output ``logits``, both with a dynamic ``batch`` axis)."""
    model = load_for_export(model_dir)
    cfg = model.config
    dummy = torch.randn(2, cfg.num_channels, cfg.image_size, cfg.image_size)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)  # the legacy exporter announces itself
        # ViT's checks of channel count and image size trace as constants: both are fixed by the config.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            _LogitsOnly(model),
            (dummy,),
            str(out_path),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    logger.info("Exported %s to %s (opset %d)", model_dir, out_path, opset)
    return out_path


def quantize_onnx_int8(onnx_path: str | Path, out_path: str | Path, reduce_range: bool = True) -> Path:
    """Writes ``out_path``: ONNX Runtime's dynamic quantization of ``onnx_path``'s MatMuls (the linear layers) to int8
    weights per output channel (7-bit range, see below), uint8 activations quantized per call. Like the PyTorch int8 path
    (:func:`modeling.inference.predictor.quantize_linear_int8`) it leaves the classifier head and the patch embedding
    in float32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    prepared = out_path.with_name(out_path.stem + ".prep.onnx")
    # ORT's quantizer logs a line per tensor on the root logger at INFO: keep it to warnings while it runs.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        quant_pre_process(str(onnx_path), str(prepared))  # shape inference + graph clean-up, as ORT's docs advise
        # The quantizer turns a Gemm into a MatMul named <gemm>_MatMul before quantizing: exclude both names.
        head = [
            name
            for n in onnx.load(str(prepared)).graph.node
            if n.op_type in ("MatMul", "Gemm") and "classifier" in n.name
            for name in (n.name, f"{n.name}_MatMul")
        ]
        quantize_dynamic(
            str(prepared),
            str(out_path),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=head,
            # 7-bit weights: on CPUs without VNNI (AVX2 only) ORT's u8 x s8 kernels add pairs of products in 16 bits,
            # which full-range weights saturate. Measured on a 2-core AVX2 EPYC, the shipped model on 1,500 FER+ test
            # faces: 83.7% of the float32 labels kept (logits off by up to 4.2) with 8-bit weights, 99.0% (0.27) with
            # 7-bit ones, at the same speed (bench/int8_agreement.py). The file is portable, so the default is the
            # setting that is safe everywhere; reduce_range=False only for comparisons.
            reduce_range=reduce_range,
        )
    finally:
        root.setLevel(level)
        prepared.unlink(missing_ok=True)
    logger.info(
        "Quantized %s to %s (int8 MatMuls, head %s kept float32)", onnx_path, out_path, head[0] if head else None
    )
    return out_path


def check_onnx(
    model_dir: str | Path, onnx_path: str | Path, batch_sizes: Sequence[int] = (1, 3), seed: int = 0
) -> float:
    """Max abs difference between ONNX Runtime and PyTorch logits over random inputs of ``batch_sizes``."""
    import onnxruntime as ort

    model = load_for_export(model_dir)
    cfg = model.config
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for n in batch_sizes:
        x = torch.randn(n, cfg.num_channels, cfg.image_size, cfg.image_size, generator=generator)
        with torch.inference_mode():
            expected = model(pixel_values=x).logits.numpy()
        (got,) = session.run(["logits"], {"pixel_values": x.numpy()})
        if got.shape != expected.shape:
            raise RuntimeError(f"ONNX logits of shape {got.shape} for batch {n}; PyTorch gives {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    p = argparse.ArgumentParser(
        prog="python -m modeling.inference.export", description=plain_text(__doc__.split("\n\n")[0])
    )
    p.add_argument("model_dir", help="Saved image classifier (save_pretrained output)")
    p.add_argument("output", help="Path of the .onnx file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument("--int8", action="store_true", help="Write ONNX Runtime's dynamic int8 quantization of the export")
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="Fail if the max abs logit difference exceeds this (default 1e-4; 0.1 with --int8)",
    )
    args = p.parse_args(argv)
    require_model("", args.model_dir)  # a missing local folder is not taken for a Hub id
    if args.tolerance is None:
        args.tolerance = 0.1 if args.int8 else 1e-4
    with user_errors(NotAnImageClassifierError):  # MODEL_DIR missing, or not a saved image classifier
        if args.int8:
            exported = Path(args.output).with_name(Path(args.output).stem + ".fp32.onnx")
            try:
                path = quantize_onnx_int8(export_onnx(args.model_dir, exported, args.opset), args.output)
            finally:
                exported.unlink(missing_ok=True)
        else:
            path = export_onnx(args.model_dir, args.output, args.opset)
    diff = check_onnx(args.model_dir, path)
    print(f"exported {path}; max abs diff ONNX Runtime vs PyTorch logits (batch 1 and 3): {diff:.3g}")
    if diff > args.tolerance:  # a failed check, not a user error: status 1
        print(f"export: difference {diff:.3g} exceeds the tolerance {args.tolerance:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m modeling.inference.export"))
