import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "inference.py"


def test_the_inference_benchmark_runs_tiny_and_prints_medians_and_the_ratio(ferplus_dir, capsys):
    spec = importlib.util.spec_from_file_location("bench_inference", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    assert bench.main(["--tiny", "--data_dir", str(ferplus_dir), "--num_images", "32", "--repeats", "2"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] == 32 and report["label_agreement"] == 1.0
    for path in ("batched", "pipeline"):
        assert report[path]["median_s"] > 0 and len(report[path]["runs_s"]) == 2
    assert report["speedup_batched_over_pipeline"] > 0
