import importlib.util
import json
from pathlib import Path

import pytest

from tests.tiny_classifier import save_tiny_classifier

BENCH = Path(__file__).resolve().parents[1] / "bench" / "int8_agreement.py"


def test_the_int8_agreement_benchmark_compares_every_variant_with_float32_on_real_faces(
    ferplus_dir, ferplus_faces, tmp_path, capsys
):
    pytest.importorskip("onnxruntime")
    spec = importlib.util.spec_from_file_location("bench_int8_agreement", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = save_tiny_classifier(tmp_path / "tiny", calibration=ferplus_faces[0][:64])
    out = tmp_path / "agreement.json"
    argv = ["--model", str(model), "--data_dir", str(ferplus_dir), "--num_images", "24", "--output", str(out)]

    assert bench.main(argv) == 0

    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    assert report["data"]["num_images"] == 24
    variants = report["variants"]
    rechecked = "torch int8, close calls re-run in float32 (the predictor's default)"
    assert sorted(variants) == sorted([
        rechecked, "torch int8, 7-bit activations (recheck=False, --no_recheck)", "torch int8, 8-bit activations",
        "ONNX Runtime int8, 7-bit weights (modeling.inference.export --int8)", "ONNX Runtime int8, 8-bit weights",
    ])  # fmt: skip
    for result in variants.values():
        assert 0 <= result["label_agreement"] <= 1 and result["faces_per_s_one_thread"] > 0
        assert 0 <= result["median_abs_logit_diff"] <= result["max_abs_logit_diff"]
    # the predictor's default keeps every label: the 8 calibration faces and the close calls ran in float32
    assert variants[rechecked]["label_agreement"] == 1.0
    reruns = variants[rechecked]["float32_reruns"]
    assert reruns["faces"] == 24 and reruns["calibration"] == 8 and 0 <= reruns["close"] <= 16
    assert variants[rechecked]["recheck_margin"] > 0
    # the 7-bit variants the package uses keep the labels (the 8-bit ones saturate on CPUs with AVX2 only)
    for name in (
        "torch int8, 7-bit activations (recheck=False, --no_recheck)",
        "ONNX Runtime int8, 7-bit weights (modeling.inference.export --int8)",
    ):
        assert variants[name]["label_agreement"] >= 0.9
