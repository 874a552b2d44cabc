import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "inference.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_inference", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_inference_benchmark_runs_tiny_in_process_and_whole_process_and_compares_with_float32(ferplus_dir, capsys):
    pytest.importorskip("onnxruntime")
    bench = load_bench()
    argv = ["--tiny", "--data_dir", str(ferplus_dir), "--num_images", "24", "--repeats", "2", "--process_repeats", "1"]
    argv += ["--latency_repeats", "2", "--threads", "1", "--paths", "fp32", "int8", "onnx_int8"]
    argv += ["--also_transformers_runtime", "--also_no_recheck"]

    assert bench.main(argv) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["data"]["num_images"] == 24 and report["machine"]["torch_threads"] == 1
    assert "weak check" in report["note"]
    (model,) = report["models"]
    assert model["model"] == "tiny (random)" and model["trained"] is False and model["skipped"] == {}
    inside = model["in_process"]
    for path in ("fp32", "int8", "onnx_int8", "pipeline"):
        assert inside[path]["median_s"] > 0 and len(inside[path]["runs_s"]) == 2
        assert inside[path]["batch1_latency_ms"] > 0
    assert inside["fp32"]["label_agreement_with_pipeline"] == 1.0 and inside["fp32"]["precision"] == "fp32"
    for path in ("int8", "onnx_int8"):
        assert inside[path]["speedup_over_pipeline"] > 0 and inside[path]["speedup_over_fp32"] > 0
        assert 0 <= inside[path]["vs_fp32"]["max_abs_logit_diff"] < 0.1
        assert 0 <= inside[path]["vs_fp32"]["label_agreement"] <= 1
    whole = model["whole_process"]
    for path in ("fp32", "int8", "onnx_int8", "pipeline"):
        assert whole[path]["median_s"] > 0 and len(whole[path]["runs_s"]) == 1
    assert whole["fp32"]["label_agreement_with_pipeline"] == 1.0
    assert whole["int8"]["stderr_precision_line"].startswith("fer-predict: precision: int8 dynamic quantization")
    assert whole["onnx_int8"]["stderr_precision_line"].startswith("fer-predict: precision: ONNX Runtime")
    # the tiny ViT runs in plain torch (fer-predict's default) and, for comparison, through transformers
    assert report["runtime"] == "auto" and inside["int8"]["runtime"] == "plain"
    assert inside["int8"]["images_at_once"] == 1  # --threads 1
    assert whole["int8"]["stderr_runtime_line"].startswith("fer-predict: runtime: plain torch ViT")
    other = whole["int8 (transformers runtime)"]
    assert other["stderr_runtime_line"] == "fer-predict: runtime: transformers (asked for)"
    assert other["label_agreement_with_fp32"] == 1.0 and "onnx_int8 (transformers runtime)" not in whole
    # int8 re-runs its close calls in float32 by default; the benchmark reports how many (over the warm-up, 2 runs
    # and 1 + 2 latency calls), and int8 without them
    alone = bench.NO_RECHECK
    reruns = inside["int8"]["float32_reruns"]
    assert reruns["calibration"] == 8 and reruns["faces"] == 24 * 3 + 1 + 2 and inside["int8"]["recheck_margin"] > 0
    assert "float32_reruns" not in inside[alone] and "float32_reruns" not in inside["fp32"]
    assert inside["int8"]["vs_fp32"]["label_agreement"] >= inside[alone]["vs_fp32"]["label_agreement"]
    assert whole["int8"]["stderr_reruns_line"].startswith("fer-predict: int8 with float32 re-runs: ")
    assert " of 24 faces in float32 (8 to set the close-call threshold, " in whole["int8"]["stderr_reruns_line"]
    assert whole[alone]["stderr_reruns_line"] is None and whole["fp32"]["stderr_reruns_line"] is None
    assert whole[alone]["stderr_precision_line"].endswith("; 1 thread")


def test_paths_that_cannot_run_here_are_skipped_with_the_reason(monkeypatch):
    bench = load_bench()
    from modeling import precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert "no bf16 units" in bench.skip_reason("bf16", "cpu")
    assert bench.skip_reason("fp32", "cpu") is None
    assert bench.skip_reason("int8", "cuda") == "CPU only"
