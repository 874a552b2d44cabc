"""How many float32 labels each int8 variant keeps, on real FER+ faces, with a saved classifier.

    python bench/int8_agreement.py --model modeling/default_model --num_images 1500 --output results/int8_agreement.json

Variants: the predictor's int8 (``FERPredictor(precision="int8")``: torch's dynamic int8 with the close calls re-run
in float32, in batches of 64), torch's dynamic int8 alone (``recheck=False``: activations quantized to 7 bits, as
torch does on x86), the same with 8-bit activations (to show why 7: on CPUs without VNNI fbgemm's AVX2 kernels add
pairs of u8 x s8 products in 16 bits, which full-range values saturate), and ONNX Runtime's int8 export with 7-bit
weights (``modeling.inference.export --int8``) and with 8-bit ones. The others run one face per call, as the predictor
does. Prints one JSON object: the machine's int8 flags, and per variant the label agreement with float32, the max and
median abs logit difference (``bench/inference.py``'s comparison), and faces/s on one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ferplus"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference import logit_comparison  # noqa: E402  (bench/inference.py: the same comparison with float32)


def compare(logits: torch.Tensor, reference: torch.Tensor, seconds: float) -> dict:
    return {**logit_comparison(logits, reference), "faces_per_s_one_thread": round(len(logits) / seconds, 1)}


def timed_logits(fn, pixels: torch.Tensor, chunk: int = 1) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    with torch.inference_mode():
        out = torch.cat([fn(pixels[i : i + chunk]) for i in range(0, len(pixels), chunk)])
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="A saved classifier directory")
    p.add_argument("--data_dir", default=str(DEFAULT_DATA), help="FER+ folder holding <split>_images.npz")
    p.add_argument("--split", default="test")
    p.add_argument("--num_images", type=int, default=1500)
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)

    from modeling.inference.export import export_onnx, quantize_onnx_int8
    from modeling.inference.predictor import FERPredictor
    from modeling.precision import cpu_int8_units, cpu_model

    torch.set_num_threads(1)
    with np.load(Path(args.data_dir) / f"{args.split}_images.npz") as z:
        faces = list(z["images"][: args.num_images])
    fp32 = FERPredictor(args.model, device="cpu", precision="fp32")
    pixels = fp32.preprocess(faces)
    reference = torch.cat([fp32.logits(pixels[i : i + 64]) for i in range(0, len(pixels), 64)])
    variants = {}

    rechecked = FERPredictor(args.model, device="cpu", precision="int8")
    out, seconds = timed_logits(rechecked.logits, pixels, chunk=64)
    variants["torch int8, close calls re-run in float32 (the predictor's default)"] = {
        **compare(out, reference, seconds),
        "float32_reruns": rechecked.recheck_counts,
        "recheck_margin": round(rechecked.recheck_margin, 4),
    }
    int8 = FERPredictor(args.model, device="cpu", precision="int8", recheck=False)
    out, seconds = timed_logits(int8._logits, pixels)
    variants["torch int8, 7-bit activations (recheck=False, --no_recheck)"] = compare(out, reference, seconds)
    linears = [m for m in int8.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert linears, "no int8 linear layer found"
    for m in linears:
        packed = m._packed_params._packed_params
        m.forward = lambda x, packed=packed: torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False)
    out, seconds = timed_logits(int8._logits, pixels)
    variants["torch int8, 8-bit activations"] = compare(out, reference, seconds)

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        variants["onnxruntime"] = "not installed (pip install -e '.[onnx]')"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            exported = export_onnx(args.model, Path(tmp) / "model.onnx")
            for bits, reduce_range in (
                ("7-bit weights (modeling.inference.export --int8)", True),
                ("8-bit weights", False),
            ):
                path = quantize_onnx_int8(exported, Path(tmp) / f"int8_{reduce_range}.onnx", reduce_range=reduce_range)
                ort = FERPredictor(args.model, onnx=path)
                out, seconds = timed_logits(ort._logits, pixels)
                variants[f"ONNX Runtime int8, {bits}"] = compare(out, reference, seconds)

    report = {
        "machine": {"cpu": cpu_model(), "int8_flags": cpu_int8_units(), "torch": torch.__version__},
        "model": args.model,
        "data": {"source": f"FER+ {args.split} 48x48 gray", "num_images": len(faces)},
        "reference": "float32, the same predictor's preprocessing",
        "variants": variants,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
