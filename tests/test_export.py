import numpy as np
import pytest

from modeling.export import check_onnx, export_onnx, main
from modeling.inference import FERPredictor
from tests.tiny_classifier import save_tiny_classifier

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model_dir = save_tiny_classifier(tmp_path_factory.mktemp("tiny_fer"))
    onnx_path = export_onnx(model_dir, model_dir / "model.onnx")
    return model_dir, onnx_path


def test_onnx_logits_match_pytorch_at_two_batch_sizes(exported):
    model_dir, onnx_path = exported
    assert check_onnx(model_dir, onnx_path, batch_sizes=(1, 5)) <= 1e-4


def test_the_onnx_graph_has_a_dynamic_batch_axis(exported):
    import onnx

    graph = onnx.load(str(exported[1])).graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert graph.input[0].name == "pixel_values" and batch_dim.dim_param == "batch"


def test_the_predictor_runs_the_onnx_file_with_the_same_scores(exported, ferplus_faces):
    model_dir, onnx_path = exported
    faces = list(ferplus_faces[0][:7])
    torch_probs = FERPredictor(model_dir, device="cpu").predict_proba(faces, batch_size=4)
    onnx_probs = FERPredictor(model_dir, onnx=onnx_path).predict_proba(faces, batch_size=4)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-5)


def test_the_export_cli_prints_the_max_abs_difference(exported, tmp_path, capsys):
    assert main([str(exported[0]), str(tmp_path / "cli.onnx"), "--opset", "17"]) == 0
    assert "max abs diff" in capsys.readouterr().out
    assert (tmp_path / "cli.onnx").stat().st_size > 0
