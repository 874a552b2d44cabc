"""CPU and GPU inference paths of FERPredictor against pipeline("image-classification"), in process and whole process.

    python bench/inference.py                                   # small and base presets at 224 px, every path
    python bench/inference.py --model path/to/finetuned --sizes # a trained model only (meaningful label agreement)
    python bench/inference.py --emulate_avx2                    # torch capped at AVX2: an AVX2-only EPYC's kernels
    python bench/inference.py --tiny                            # tiny random model, quick (tests/test_bench_inference.py)

Paths (``--paths``): ``fp32`` (eager float32), ``bf16`` (autocast; run only on CUDA or a CPU with bf16 units, it
is emulated ~250x slower elsewhere, NOTES #23), ``int8`` (torch dynamic quantization of the linear layers,
``fer-predict --precision int8``, with its float32 re-runs of close calls; ``--also_no_recheck`` adds int8 without
them), ``onnx`` and ``onnx_int8`` (ONNX Runtime on the export of
``modeling.inference.export``, float32 and with ``--int8``). Every path classifies the same real FER+ faces (48x48
gray, ``<split>_images.npz`` of ``--data_dir``) with the same saved model and batch size; ``pipeline()`` is float32.

Two kinds of figure, medians of several runs interleaved run by run:

- in process: one ``FERPredictor`` per path and one ``pipeline()`` over the faces in memory (after a warm-up run),
  and the batch-1 latency (one face per call);
- whole process: ``fer-predict --no_detect`` (``python -m modeling.inference.fer_predict``) over a folder of the
  faces as PNG files, against a child process running a ``pipeline()`` over the same files, start-up and model
  loading included.

Label agreement with float32 on the same faces, the max abs logit difference and the float32 top-2 margins are
reported per path. An untrained preset model has no learned decision boundaries (its logits are often near-uniform),
so its agreement is a weak check: the max logit difference, and the agreement on a trained model (``--model``), are
the real ones. The FER+ accuracy of each arithmetic:
``python -m modeling.inference.evaluate MODEL ... --precision int8``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ferplus"
PATHS = ("fp32", "bf16", "int8", "onnx", "onnx_int8")
NO_RECHECK = "int8 (no float32 re-runs)"
# Caps torch's own kernels (ATen), oneDNN, fbgemm (int8) and MKL (float32 GEMM) to AVX2, which imitates an AVX2-only
# EPYC on a CPU with AVX-512 (same cores and caches otherwise). ONNX Runtime's MLAS has no such switch.
AVX2_CAPS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}
WEAK_CHECK_NOTE = (
    "An untrained (random) model's logits carry no learned decision boundaries (often near-uniform: top-2 margins "
    "near 0), so label agreement on it is a weak check; there max_abs_logit_diff against fp32_logit_std is the "
    "measure. On a trained model (--model, trained: true) label agreement is meaningful."
)


def build_random_model(out_dir: Path, size: str, image_size: int, patch_size: int, tiny: bool) -> Path:
    from transformers import ViTForImageClassification

    from modeling.labels import FERPLUS_LABELS
    from modeling.models.sizes import image_processor_for, vit_config

    overrides = (
        {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64} if tiny else {}
    )
    config = vit_config(
        "tiny" if tiny else size, image_size=image_size, patch_size=patch_size, labels=FERPLUS_LABELS, **overrides
    )
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(out_dir)
    image_processor_for(image_size).save_pretrained(out_dir)
    return out_dir


def fit_head(model_dir: Path, data_dir: Path, faces: int, batch_size: int) -> dict:
    """Fits the classifier head of a random preset to FER+ training faces (a linear probe on its frozen [CLS]
    features, majority labels), so that label agreement is measured against learned decision boundaries rather than
    the near-uniform logits of a random head. The backbone stays random: a stand-in, not a trained model."""
    import csv

    from modeling.data.ferplus_votes import majority
    from modeling.inference.predictor import FERPredictor

    votes = {}
    with open(data_dir / "fer2013new.csv", newline="") as f:
        for row in csv.reader(f):
            if row[0] == "Training":
                votes[row[1]] = [int(v) for v in row[2:]]
    with np.load(data_dir / "train_images.npz") as z:
        images, names = z["images"], [str(n) for n in z["names"]]
    picked = [(i, t.label) for i, n in enumerate(names) if (t := majority(votes[n])).label is not None][:faces]
    predictor = FERPredictor(model_dir, device="cpu", precision="fp32", runtime="transformers")
    model = predictor.model
    features = []
    with torch.inference_mode():
        for start in range(0, len(picked), batch_size):
            pixels = predictor.preprocess([images[i] for i, _ in picked[start : start + batch_size]])
            features.append(model.vit(pixel_values=pixels).last_hidden_state[:, 0])
    x, y = torch.cat(features), torch.tensor([label for _, label in picked])
    head = torch.nn.Linear(x.shape[1], model.config.num_labels)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def loss_fn():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + 1e-3 * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(loss_fn)
    with torch.no_grad():
        model.classifier.load_state_dict(head.state_dict())
        accuracy = float((head(x).argmax(1) == y).float().mean())
    model.save_pretrained(model_dir)
    return {"faces": len(picked), "labels": "FER+ majority", "train_accuracy": round(accuracy, 4)}


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return runs


def summary(runs: list[float], n: int) -> dict:
    med = statistics.median(runs)
    return {"median_s": round(med, 4), "images_per_s": round(n / med, 1), "runs_s": [round(t, 4) for t in runs]}


def skip_reason(path: str, device: str) -> str | None:
    """Why ``path`` does not run here, or None."""
    from modeling.precision import int8_engine, native_bf16_units

    on_cpu = torch.device(device).type == "cpu"
    if path == "bf16" and on_cpu and not native_bf16_units():
        return "no bf16 units on this CPU (or capped): bf16 would be emulated, ~250x slower than float32 (NOTES #23)"
    if path == "int8" and not (on_cpu and int8_engine()):
        return "int8 dynamic quantization needs the CPU and torch.ao.quantization" if on_cpu else "CPU only"
    if path.startswith("onnx"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install -e '.[onnx]')"
        if not on_cpu:
            return "benchmarked on CPU only"
    return None


def logit_comparison(logits: torch.Tensor, reference: torch.Tensor) -> dict:
    """Agreement of ``logits [N, C]`` with the float32 ``reference [N, C]``; margins are the reference's top-2 gaps."""
    top2 = reference.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    diff = (logits - reference).abs().max(dim=1).values
    same = logits.argmax(1) == reference.argmax(1)
    safe = margin > 2 * diff.max()  # no logit error this size can flip these
    return {
        "label_agreement": round(float(same.float().mean()), 4),
        "max_abs_logit_diff": round(float(diff.max()), 5),
        "median_abs_logit_diff": round(float(diff.median()), 5),
        "fp32_logit_std": round(float(reference.std()), 4),
        "fp32_top2_margin_median": round(float(margin.median()), 5),
        "share_with_margin_over_2x_max_diff": round(float(safe.float().mean()), 4),
    }


def all_logits(predictor, crops: list[np.ndarray], batch_size: int) -> torch.Tensor:
    chunks = [
        predictor.logits(predictor.preprocess(crops[i : i + batch_size])) for i in range(0, len(crops), batch_size)
    ]
    return torch.cat(chunks)


def in_process(model_dir: Path, onnx_files: dict, paths: list[str], crops, args) -> dict:
    from PIL import Image
    from transformers import pipeline

    from modeling.inference.predictor import FERPredictor

    predictors = {}
    for path in paths:
        if path.startswith("onnx"):
            predictors[path] = FERPredictor(model_dir, device=args.device, onnx=onnx_files[path], runtime=args.runtime)
        else:
            predictors[path] = FERPredictor(model_dir, device=args.device, precision=path, runtime=args.runtime)
    if args.also_no_recheck and "int8" in paths:
        predictors[NO_RECHECK] = FERPredictor(
            model_dir, device=args.device, precision="int8", runtime=args.runtime, recheck=False
        )
    pipe = pipeline("image-classification", model=str(model_dir), device=args.device)
    pil = [Image.fromarray(f) for f in crops]

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    runners = {
        p: (lambda pr=pr: (pr.predict(crops, batch_size=args.batch_size), sync())) for p, pr in predictors.items()
    }
    runners["pipeline"] = lambda: (pipe(pil, batch_size=args.batch_size, top_k=1), sync())
    for fn in runners.values():  # warm-up
        fn()
    runs: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):  # interleaved, so that a busy moment hits every path alike
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    one, one_pil = crops[:1], pil[:1]
    latency = {
        p: timed(lambda pr=pr: (pr.predict(one, batch_size=1), sync()), args.latency_repeats)
        for p, pr in predictors.items()
    }
    latency["pipeline"] = timed(lambda: (pipe(one_pil, top_k=1), sync()), args.latency_repeats)

    n = len(crops)
    report = {name: summary(r, n) for name, r in runs.items()}
    pipe_med = report["pipeline"]["median_s"]
    fp32_med = report["fp32"]["median_s"] if "fp32" in report else None
    for name in predictors:
        report[name]["speedup_over_pipeline"] = round(pipe_med / report[name]["median_s"], 2)
        if fp32_med:
            report[name]["speedup_over_fp32"] = round(fp32_med / report[name]["median_s"], 2)
        report[name]["precision"] = predictors[name].precision
        report[name]["runtime"] = predictors[name].runtime
        report[name]["images_at_once"] = predictors[name].images_at_once
        if predictors[name].rechecks:  # over the warm-up, the timed runs and the latency calls
            report[name]["float32_reruns"] = predictors[name].recheck_counts
            report[name]["recheck_margin"] = round(predictors[name].recheck_margin, 5)
    for name, r in latency.items():
        report[name]["batch1_latency_ms"] = round(1000 * statistics.median(r), 2)

    # Labels and logits: every path against eager float32 on the same faces
    reference = all_logits(predictors["fp32"], crops, args.batch_size) if "fp32" in predictors else None
    pipe_labels = [r[0]["label"] for r in pipe(pil, batch_size=args.batch_size, top_k=1)]
    for name, predictor in predictors.items():
        logits = all_logits(predictor, crops, args.batch_size)
        labels = [predictor.labels[i] for i in logits.argmax(1).tolist()]
        report[name]["label_agreement_with_pipeline"] = round(
            float(np.mean([a == b for a, b in zip(labels, pipe_labels)])), 4
        )
        if reference is not None and name != "fp32":
            report[name]["vs_fp32"] = logit_comparison(logits, reference)
    return report


def pipeline_child(argv: list[str]) -> int:
    """Child process of the whole-process baseline: ``pipeline()`` over the PNG files of a folder; labels to a file."""
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("--model", required=True)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)
    from transformers import pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    files = sorted(str(f) for f in Path(args.folder).glob("*.png"))
    pipe = pipeline("image-classification", model=args.model, device=args.device)
    labels = [r[0]["label"] for r in pipe(files, batch_size=args.batch_size, top_k=1)]
    Path(args.output).write_text(json.dumps(labels))
    return 0


def whole_process(model_dir: Path, onnx_files: dict, paths: list[str], folder: Path, work: Path, args) -> dict:
    from modeling.inference.fer_predict import RERUNS_LINE

    threads = ["--threads", str(args.threads)] if args.threads else []
    commands = {}
    runs_of = [(path, path, args.runtime) for path in paths]
    if args.also_transformers_runtime and args.runtime != "transformers":
        runs_of += [(f"{p} (transformers runtime)", p, "transformers") for p in paths if not p.startswith("onnx")]
    if args.also_no_recheck and "int8" in paths:
        runs_of.append((NO_RECHECK, "int8", args.runtime))
    for name, path, runtime in runs_of:
        how = ["--onnx", str(onnx_files[path])] if path.startswith("onnx") else ["--precision", path]
        how += ["--no_recheck"] if name == NO_RECHECK else []
        out = work / f"{name}.jsonl"
        commands[name] = (
            [sys.executable, "-m", "modeling.inference.fer_predict", str(folder), "--no_detect",
             "--model", str(model_dir), "--batch_size", str(args.batch_size), "--device", args.device, "--no_progress",
             "--output", str(out), "--runtime", runtime, *how, *threads],
            out,
        )  # fmt: skip
    out = work / "pipeline.json"
    commands["pipeline"] = (
        [sys.executable, str(Path(__file__).resolve()), "--pipeline_child", str(folder), "--model", str(model_dir),
         "--batch_size", str(args.batch_size), "--device", args.device, "--output", str(out), *threads],
        out,
    )  # fmt: skip
    runs: dict[str, list[float]] = {name: [] for name in commands}
    logs: dict[str, str] = {}
    for _ in range(args.process_repeats):
        for name, (cmd, _) in commands.items():
            start = time.perf_counter()
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            runs[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
            logs[name] = done.stderr
    labels = {}
    for name, (_, out) in commands.items():
        if name == "pipeline":
            labels[name] = json.loads(out.read_text())
        else:
            labels[name] = [json.loads(line)["label"] for line in out.read_text().splitlines()]
    n = len(labels["pipeline"])
    report = {name: summary(r, n) for name, r in runs.items()}
    pipe_med = report["pipeline"]["median_s"]
    for name, _, _ in runs_of:
        report[name]["speedup_over_pipeline"] = round(pipe_med / report[name]["median_s"], 2)
        if "fp32" in report:
            report[name]["speedup_over_fp32"] = round(report["fp32"]["median_s"] / report[name]["median_s"], 2)
        for what, start in (("precision", "precision: "), ("runtime", "runtime: "), ("reruns", RERUNS_LINE)):
            said = [line for line in logs[name].splitlines() if line.startswith(f"fer-predict: {start}")]
            report[name][f"stderr_{what}_line"] = said[0] if said else None
        agree = np.mean([a == b for a, b in zip(labels[name], labels["pipeline"])])
        report[name]["label_agreement_with_pipeline"] = round(float(agree), 4)
        if "fp32" in labels and name != "fp32":
            report[name]["label_agreement_with_fp32"] = round(
                float(np.mean([a == b for a, b in zip(labels[name], labels["fp32"])])), 4
            )
    return report


def bench_model(name: str, model_dir: Path, trained: bool, crops, args, work: Path) -> dict:
    from PIL import Image

    from modeling.inference.export import export_onnx, quantize_onnx_int8
    from modeling.inference.predictor import FERPredictor
    from modeling.precision import choose_inference_precision, int8_engine, native_bf16_units

    on_cpu = torch.device(args.device).type == "cpu"
    probe = FERPredictor(model_dir, device="cpu", precision="fp32")
    image_size, tokens, hidden = probe.size[0], probe.tokens, probe.hidden
    del probe  # a whole model: not kept through the timings
    units, int8_ok = (native_bf16_units(), int8_engine() is not None) if on_cpu else ([], False)
    auto = choose_inference_precision(torch.device(args.device).type, "auto", units, int8_ok, tokens, hidden)
    skipped = {p: why for p in args.paths if (why := skip_reason(p, args.device))}
    paths = [p for p in args.paths if p not in skipped]
    onnx_files, export_s = {}, {}
    if any(p.startswith("onnx") for p in paths):
        start = time.perf_counter()
        onnx_files["onnx"] = export_onnx(model_dir, work / "model.onnx")
        export_s["onnx"] = round(time.perf_counter() - start, 2)
        if "onnx_int8" in paths:
            start = time.perf_counter()
            onnx_files["onnx_int8"] = quantize_onnx_int8(onnx_files["onnx"], work / "model_int8.onnx")
            export_s["onnx_int8"] = round(time.perf_counter() - start, 2)
    report = {
        "model": name,
        "trained": trained,
        "image_size": image_size,
        "tokens_per_image": tokens,
        "auto_precision": auto[0],
        "auto_why": auto[1],
        "skipped": skipped,
        "onnx_export_s": export_s,
        "in_process": in_process(model_dir, onnx_files, paths, crops, args),
    }
    if args.process_repeats:
        folder = work / "crops"
        folder.mkdir(exist_ok=True)
        for i, crop in enumerate(crops):
            Image.fromarray(crop).save(folder / f"{i:05d}.png")
        report["whole_process"] = whole_process(model_dir, onnx_files, paths, folder, work, args)
    return report


def parse_args(argv=None) -> argparse.Namespace:
    from modeling.inference.predictor import RUNTIMES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default=None, help="A saved (trained) classifier directory, benchmarked after the presets"
    )
    p.add_argument("--sizes", nargs="*", default=["small", "base"], help="Presets of random models (none: --sizes)")
    p.add_argument("--tiny", action="store_true", help="Random tiny model only (hidden 32, 2 layers, image 32)")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--patch_size", type=int, default=16)
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="Predictor paths to run")
    p.add_argument("--data_dir", default=str(DEFAULT_DATA), help="FER+ folder holding <split>_images.npz")
    p.add_argument("--split", default="valid")
    p.add_argument("--num_images", type=int, default=192)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="Timed in-process runs per path (after one warm-up)")
    p.add_argument("--process_repeats", type=int, default=5, help="Whole-process runs per path (0: none)")
    p.add_argument("--latency_repeats", type=int, default=20, help="Single-face calls timed for batch-1 latency")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch (and ONNX Runtime) threads (default: torch's)")
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="FERPredictor / fer-predict runtime (default auto, fer-predict's: plain torch for a local ViT)",
    )
    p.add_argument(
        "--fit_head",
        type=int,
        default=0,
        metavar="N",
        help="Fit each preset's classifier head to N FER+ training faces first (a linear probe on the random\n"
        "backbone): label agreement then faces learned decision boundaries (needs train_images.npz, fer2013new.csv)",
    )
    p.add_argument(
        "--also_transformers_runtime",
        action="store_true",
        help="Whole process: also run each torch path with fer-predict --runtime transformers (the start-up cost)",
    )
    p.add_argument(
        "--also_no_recheck",
        action="store_true",
        help=f"Also run int8 without its float32 re-runs of close calls ({NO_RECHECK!r}: recheck=False, --no_recheck)",
    )
    p.add_argument(
        "--emulate_avx2", action="store_true", help="Run under " + " ".join(f"{k}={v}" for k, v in AVX2_CAPS.items())
    )
    p.add_argument("--output", default=None, help="Also write the JSON report here")
    args = p.parse_args(argv)
    if "fp32" not in args.paths:
        p.error("--paths needs fp32: it is the reference of the comparisons")
    if args.tiny:
        args.sizes = []
    if not args.sizes and not args.tiny and not args.model:
        p.error("nothing to benchmark: give --sizes, --tiny or --model")
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--pipeline_child"]:
        return pipeline_child(argv[1:])
    args = parse_args(argv)
    if args.emulate_avx2 and any(os.environ.get(k) != v for k, v in AVX2_CAPS.items()):
        # The caps are read when torch loads its kernels: run again in a child with them set (subprocesses inherit).
        return subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), *argv], env={**os.environ, **AVX2_CAPS}
        ).returncode
    if args.threads:
        torch.set_num_threads(args.threads)

    from modeling.precision import cpu_bf16_units, cpu_int8_units, cpu_model, native_bf16_units

    with np.load(Path(args.data_dir) / f"{args.split}_images.npz") as z:
        crops = list(z["images"][: args.num_images].copy())
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    caps = {k: os.environ[k] for k in AVX2_CAPS if k in os.environ}
    report = {
        "machine": {
            "cpu": cpu_model(),
            "bf16_flags": cpu_bf16_units(),
            "bf16_native_here": native_bf16_units(),
            "int8_flags": cpu_int8_units(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "isa_caps": caps,
            "isa_caps_note": "ONNX Runtime ignores these caps: its figures are the full CPU's" if caps else None,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "onnxruntime": ort_version,
        },
        "data": {"source": f"FER+ {args.split} 48x48 gray", "num_images": len(crops)},
        "device": args.device,
        "batch_size": args.batch_size,
        "runtime": args.runtime,
        "repeats": args.repeats,
        "process_repeats": args.process_repeats,
        "latency_repeats": args.latency_repeats,
        "note": WEAK_CHECK_NOTE,
        "models": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        todo = []
        if args.tiny:
            todo.append(("tiny (random)", build_random_model(Path(tmp) / "tiny", "tiny", 32, 8, True), False))
        for size in args.sizes:
            model_dir = build_random_model(Path(tmp) / size, size, args.image_size, args.patch_size, False)
            name = f"{size} (random)"
            if args.fit_head:
                print(f"bench/inference.py: fitting the head of {size} to {args.fit_head} faces", file=sys.stderr)
                fitted = fit_head(model_dir, Path(args.data_dir), args.fit_head, args.batch_size)
                report.setdefault("head_fitted", {})[size] = fitted
                name = f"{size} (random backbone, head fitted to {fitted['faces']} FER+ training faces)"
            todo.append((name, model_dir, False))
        if args.model:
            todo.append((args.model, Path(args.model), True))
        for name, model_dir, trained in todo:
            work = Path(tmp) / f"work_{len(report['models'])}"
            work.mkdir()
            print(f"bench/inference.py: {name}", file=sys.stderr)
            report["models"].append(bench_model(name, model_dir, trained, crops, args, work))
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
