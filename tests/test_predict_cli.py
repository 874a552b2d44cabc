import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from modeling.inference import shipped
from modeling.inference.faces import HaarFaceDetector, iou
from modeling.inference.fer_predict import main
from modeling.inference.predictor import FERPredictor
from tests.tiny import tiny_mae_config
from tests.tiny_classifier import save_tiny_classifier

FACE = 112  # upscaled FER+ face size on the canvases
POS = (150, 90)  # where the face is pasted: x, y


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, ferplus_faces):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny_fer"), calibration=ferplus_faces[0][:64])


@pytest.fixture(scope="module")
def face_canvas(ferplus_faces):
    """A 400x320 RGB canvas with the first cascade-detectable FER+ face (112 px) pasted at POS."""
    detector = HaarFaceDetector()
    for image in ferplus_faces[0]:
        face = cv2.resize(image, (FACE, FACE), interpolation=cv2.INTER_CUBIC)
        if detector.detect(face):
            break
    else:
        pytest.fail("no FER+ face detectable by the Haar cascade")
    canvas = np.clip(np.random.default_rng(0).normal(128, 12, (320, 400)), 0, 255).astype(np.uint8)
    canvas[POS[1] : POS[1] + FACE, POS[0] : POS[0] + FACE] = face
    return np.repeat(canvas[:, :, None], 3, axis=2)


def _read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_no_detect_on_a_folder_of_real_crops_gives_the_predictors_labels(tiny_dir, ferplus_faces, tmp_path):
    crops = ferplus_faces[0][:20]
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, crop in enumerate(crops):
        Image.fromarray(crop).save(folder / f"{i:03d}.png")
    out = tmp_path / "out.jsonl"

    assert main([str(folder), "--no_detect", "--batch_size", "8", "--output", str(out), "--model", str(tiny_dir)]) == 0

    lines = _read_lines(out)
    expected = FERPredictor(tiny_dir, device="cpu").predict(list(crops))
    assert [rec["label"] for rec in lines] == [e["label"] for e in expected]
    assert [rec["file"] for rec in lines] == [str(folder / f"{i:03d}.png") for i in range(20)]
    assert all(rec["box"] == [0, 0, 48, 48] and rec["frame"] is None and len(rec["scores"]) == 8 for rec in lines)


def test_bad_inputs_are_reported_per_file_and_the_run_goes_on(tiny_dir, face_canvas, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.fromarray(face_canvas).save(inputs / "a_face.png")
    (inputs / "b_broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(inputs / "c_blank.png")
    (inputs / "d_broken.mp4").write_bytes(b"not a video" * 10)
    writer = cv2.VideoWriter(str(inputs / "e_clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (400, 320))
    for _ in range(4):
        writer.write(cv2.cvtColor(face_canvas, cv2.COLOR_RGB2BGR))
    writer.release()
    out, annotated = tmp_path / "out.jsonl", tmp_path / "annotated"

    argv = [str(inputs), "--every_n_frames", "2", "--output", str(out), "--annotate", str(annotated)]
    status = main([*argv, "--model", str(tiny_dir)])

    assert status == 0
    by_file = {}
    for rec in _read_lines(out):
        by_file.setdefault(rec["file"].rsplit("/", 1)[-1], []).append(rec)
    face = by_file["a_face.png"]
    assert len(face) == 1 and "error" not in face[0]
    assert iou(tuple(face[0]["box"]), (*POS, FACE, FACE)) > 0.5
    assert by_file["b_broken.jpg"][0]["error"].startswith("unreadable image")
    assert by_file["c_blank.png"] == [
        {
            "file": str(inputs / "c_blank.png"),
            "frame": None,
            "error": "no face detected; if the inputs already are face crops, pass --no_detect",
        }
    ]
    assert by_file["d_broken.mp4"][0]["error"].startswith("unreadable video")
    assert [rec["frame"] for rec in by_file["e_clip.avi"]] == [0, 2]
    assert sorted(p.name for p in annotated.iterdir()) == ["a_face.png", "e_clip_f000000.jpg", "e_clip_f000002.jpg"]
    assert face[0]["annotated"] == str(annotated / "a_face.png")
    assert cv2.imread(str(annotated / "a_face.png")).shape == (320, 400, 3)


def test_inputs_without_a_detected_face_suggest_no_detect_for_face_crops(tiny_dir, tmp_path, capsys):
    grey = np.full((64, 64, 3), 128, np.uint8)  # like a tight crop: nothing for the detector
    Image.fromarray(grey).save(tmp_path / "crop.png")
    writer = cv2.VideoWriter(str(tmp_path / "crops.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
    for _ in range(3):
        writer.write(grey)
    writer.release()

    argv = [str(tmp_path / "crop.png"), str(tmp_path / "crops.avi"), "--every_n_frames", "1", "--model", str(tiny_dir)]
    assert main(argv) == 0

    captured = capsys.readouterr()
    image, video = [json.loads(line) for line in captured.out.splitlines()]
    assert image["error"] == "no face detected; if the inputs already are face crops, pass --no_detect"
    assert video["error"] == "no face detected in 3 frame(s); if the inputs already are face crops, pass --no_detect"
    assert "2 input(s) without a detected face; if the inputs already are face crops, pass --no_detect" in captured.err


def test_the_exit_status_is_nonzero_when_nothing_could_be_read(tiny_dir, tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"garbage")
    (tmp_path / "y.avi").write_bytes(b"garbage")
    inputs = [str(tmp_path / "x.png"), str(tmp_path / "y.avi"), str(tmp_path / "missing.jpg")]
    status = main([*inputs, "--model", str(tiny_dir)])
    assert status == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [rec["file"].rsplit("/", 1)[-1] for rec in lines] == ["x.png", "y.avi", "missing.jpg"]
    assert all("error" in rec for rec in lines)


def test_a_model_that_is_not_an_image_classifier_stops_the_cli_with_a_clear_message(tmp_path, capsys):
    from transformers import ViTMAEForPreTraining

    ViTMAEForPreTraining(tiny_mae_config()).save_pretrained(tmp_path / "mae")
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "face.png")
    assert main([str(tmp_path / "face.png"), "--no_detect", "--model", str(tmp_path / "mae")]) == 2
    assert "not an image classifier" in capsys.readouterr().err


def test_python_dash_m_modeling_predict_runs_end_to_end(tiny_dir, ferplus_faces, tmp_path):
    Image.fromarray(ferplus_faces[0][0]).save(tmp_path / "face.png")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modeling.inference.fer_predict",
            str(tmp_path / "face.png"),
            "--no_detect",
            "--model",
            str(tiny_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert record["label"] in record["scores"] and record["file"].endswith("face.png")


def test_without_model_the_default_model_classifies_and_is_named_on_stderr(
    tiny_dir, ferplus_faces, tmp_path, monkeypatch, capsys
):
    for i, crop in enumerate(ferplus_faces[0][:6]):
        Image.fromarray(crop).save(tmp_path / f"{i}.png")
    assert main([str(tmp_path), "--no_detect", "--model", str(tiny_dir)]) == 0
    explicit = capsys.readouterr()
    monkeypatch.setenv(shipped.ENV_VAR, str(tiny_dir))  # stands in for a model shipped in modeling/default_model/

    assert main([str(tmp_path), "--no_detect"]) == 0

    default = capsys.readouterr()
    assert default.out == explicit.out and len(default.out.splitlines()) == 6
    assert f"fer-predict: model {tiny_dir.resolve()} (the default model)\n" in default.err
    assert f"fer-predict: model {tiny_dir}\n" in explicit.err


def test_without_model_and_without_a_shipped_model_the_cli_exits_2_with_one_line_saying_to_pass_model(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv(shipped.ENV_VAR, raising=False)
    monkeypatch.setattr(shipped, "files", lambda package: tmp_path / "package")  # a package with no default_model/
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "face.png")

    assert main([str(tmp_path / "face.png"), "--no_detect", "--output", str(tmp_path / "out.jsonl")]) == 2

    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("fer-predict: error: this version or checkout of fer-mae ships no default model")
    assert "pass --model DIR_OR_HUB_ID" in line
    assert captured.out == "" and not (tmp_path / "out.jsonl").exists()


def test_a_model_folder_given_as_an_input_the_old_way_is_a_usage_error_naming_model(tiny_dir, tmp_path, capsys):
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "face.png")
    assert main([str(tiny_dir), str(tmp_path / "face.png"), "--no_detect"]) == 2
    assert f"is a model folder, not an input: pass it as --model {tiny_dir}" in capsys.readouterr().err


def test_model_may_come_before_between_or_after_the_inputs(tiny_dir, ferplus_faces, tmp_path, capsys):
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    for path, crop in zip((a, b), ferplus_faces[0][:2]):
        Image.fromarray(crop).save(path)
    outputs = []
    for argv in (["--model", str(tiny_dir), a, b], [a, "--model", str(tiny_dir), b], [a, b, "--model", str(tiny_dir)]):
        assert main([*argv, "--no_detect"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0].splitlines()) == 2


# --- --precision: the arithmetic fer-predict runs, named on stderr ----------------------------------------------------


@pytest.fixture(scope="module")
def vit64_dir(tmp_path_factory):
    from tests.test_inference import WIDE_ENOUGH_FOR_INT8, save_vit_64

    return save_vit_64(tmp_path_factory.mktemp("vit64"), **WIDE_ENOUGH_FOR_INT8)


@pytest.fixture
def keep_torch_threads():
    """``--threads`` sets torch's thread count for the whole (test) process: put it back afterwards."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def crops_folder(ferplus_faces, tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, crop in enumerate(ferplus_faces[0][:12]):
        Image.fromarray(crop).save(folder / f"{i:03d}.png")
    return folder


@pytest.mark.parametrize(
    ("units", "flags", "expected"),
    [
        ([], [], "precision: int8 dynamic quantization of the linear layers on CPU (no bf16 units)"),
        ([], ["--precision", "fp32"], "precision: float32 on CPU (--precision fp32)"),
        (["amx_bf16"], [], "precision: bf16 autocast on CPU (bf16 units: amx_bf16)"),
        (["amx_bf16"], ["--bf16"], "precision: bf16 autocast on CPU (asked for; bf16 units: amx_bf16)"),
        (["amx_bf16"], ["--precision", "int8"], "precision: int8 dynamic quantization of the linear layers on CPU"),
        ([], ["--no_recheck"], "precision: int8 dynamic quantization of the linear layers on CPU (no bf16 units)"),
    ],
    ids=["auto_without_bf16_units", "forced_fp32", "auto_with_amx", "bf16_alias", "forced_int8", "int8_no_recheck"],
)
def test_fer_predict_picks_int8_without_bf16_units_says_which_path_runs_and_gives_its_labels(
    vit64_dir, crops_folder, monkeypatch, capsys, keep_torch_threads, units, flags, expected
):
    from tests.test_inference import mock_bf16_units

    mock_bf16_units(monkeypatch, units)
    argv = [str(crops_folder), "--no_detect", "--threads", "1", "--model", str(vit64_dir), *flags]

    assert main(argv) == 0

    captured = capsys.readouterr()
    (line,) = [line for line in captured.err.splitlines() if line.startswith("fer-predict: precision: ")]
    arithmetic = {"int8": "int8", "float32": "fp32", "bf16 a": "bf16"}
    kind = next(v for k, v in arithmetic.items() if expected.startswith(f"precision: {k}"))
    rechecks = kind == "int8" and "--no_recheck" not in flags
    tail = "; 1 thread" + ("; close calls re-run in float32 (--no_recheck: int8 only)" if rechecks else "")
    assert line.startswith(f"fer-predict: {expected}") and line.endswith(tail)
    crops = [np.asarray(Image.open(crops_folder / f"{i:03d}.png")) for i in range(12)]
    assert (
        "fer-predict: runtime: plain torch ViT (modeling.inference.vit_runtime; transformers not imported)"
        in captured.err
    )
    reference = FERPredictor(vit64_dir, device="cpu", precision=kind, runtime="plain", recheck=rechecks)
    predicted = reference.predict(crops)
    assert [json.loads(line)["scores"] for line in captured.out.splitlines()] == [p["scores"] for p in predicted]
    reruns = [line for line in captured.err.splitlines() if line.startswith("fer-predict: int8 with float32 re-runs")]
    if rechecks:  # 12 crops: the first 8 set the threshold, the other 4 run again where their top-2 gap is under it
        close = reference.recheck_counts["close"]
        assert reruns == [
            f"fer-predict: int8 with float32 re-runs: {8 + close} of 12 faces in float32 (8 to set the close-call "
            f"threshold, {close} with a top-2 logit gap under {reference.recheck_margin:.3g})"
        ]
    else:
        assert reruns == []


@pytest.mark.parametrize(
    "flags",
    [["--bf16", "--precision", "fp32"], ["--precision", "fp16"], ["--onnx", "m.onnx", "--precision", "int8"]],
    ids=["bf16_contradicts_fp32", "unknown", "onnx_with_int8"],
)
def test_contradictory_or_unknown_precision_flags_are_usage_errors(tiny_dir, tmp_path, capsys, flags):
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "face.png")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "face.png"), "--no_detect", "--model", str(tiny_dir), *flags])
    assert exit_info.value.code == 2
    assert "--precision" in capsys.readouterr().err
