"""The demo page's logic (demo/app.py) without a browser: a photo in, the annotated photo and per-face scores out."""

import base64
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import modeling
from modeling.cli import UsageError
from modeling.inference.faces import HaarFaceDetector, crop_face, iou
from modeling.inference.fer_predict import main as fer_predict
from modeling.inference.predictor import FERPredictor
from modeling.training.recipes import ScriptArgumentParser, parse_script_args
from tests.tiny_classifier import save_tiny_classifier

FACE = 112  # upscaled FER+ face size on the canvas: the cascade's 30 px minimum and photos want larger faces
POS = (150, 90)  # where the face is pasted: x, y
ROOT = Path(__file__).resolve().parents[1]
GREEN = (0, 255, 0)  # fer-predict's box colour (modeling.inference.media.draw_faces)


def face_photo(faces: np.ndarray) -> np.ndarray:
    """``[320, 400, 3]`` uint8 RGB: the first cascade-detectable FER+ face, upscaled to 112 px, pasted at ``POS`` on
    a noisy gray canvas (as tests/test_faces.py builds its photo). Also used by the browser test."""
    detector = HaarFaceDetector()
    for image in faces:
        face = cv2.resize(image, (FACE, FACE), interpolation=cv2.INTER_CUBIC)
        if detector.detect(face):
            break
    else:
        pytest.fail("no FER+ face detectable by the Haar cascade")
    canvas = np.clip(np.random.default_rng(0).normal(128, 12, (320, 400)), 0, 255).astype(np.uint8)
    canvas[POS[1] : POS[1] + FACE, POS[0] : POS[0] + FACE] = face
    return np.repeat(canvas[:, :, None], 3, axis=2)


def load_demo_app():
    """demo/app.py as the module ``demo_app`` (it is a script, not a package module)."""
    if "demo_app" not in sys.modules:
        spec = importlib.util.spec_from_file_location("demo_app", ROOT / "demo" / "app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["demo_app"] = module  # before running it: dataclasses and HfArgumentParser look the module up
        spec.loader.exec_module(module)
    return sys.modules["demo_app"]


@pytest.fixture(scope="module")
def demo_app():
    return load_demo_app()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, ferplus_faces):
    # calibrated on real faces, so that its predictions spread over the classes (tests/tiny_classifier.py)
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny_fer"), calibration=ferplus_faces[0][:64])


@pytest.fixture(scope="module")
def predictor(tiny_dir):
    return FERPredictor(tiny_dir, device="cpu")


@pytest.fixture(scope="module")
def photo(ferplus_faces):
    return face_photo(ferplus_faces[0])


def test_a_face_in_a_photo_is_boxed_labelled_and_scored_as_the_predictor_scores_its_crop(demo_app, predictor, photo):
    result = demo_app.analyze(photo, predictor, HaarFaceDetector(), margin=0.2)

    assert len(result.faces) == 1
    face = result.faces[0]
    assert iou(tuple(face["box"]), (*POS, FACE, FACE)) > 0.5, face["box"]
    expected = predictor.predict([crop_face(photo, tuple(face["box"]), 0.2)])[0]
    assert face["label"] == expected["label"] and face["label"] in predictor.labels
    assert face["scores"] == expected["scores"]
    assert result.image.shape == photo.shape and result.image.dtype == np.uint8
    x, y, w, h = face["box"]
    assert tuple(result.image[y + h // 2, x]) == GREEN  # the box's left edge
    assert tuple(result.image[y + h // 2, x + w // 2]) == tuple(photo[y + h // 2, x + w // 2])  # the face inside kept
    assert f"**{expected['label']}** {expected['score']:.2f}" in result.message
    assert "1 face found" in result.message


def test_the_whole_image_switch_classifies_the_image_as_one_crop(demo_app, predictor, ferplus_faces):
    crop = ferplus_faces[0][3]  # a 48x48 gray FER+ crop: too tight for the detector

    result = demo_app.analyze(crop, predictor, None)

    assert [f["box"] for f in result.faces] == [[0, 0, 48, 48]]
    assert result.faces[0]["label"] == predictor.predict([crop])[0]["label"]
    assert result.image.shape == (48, 48, 3)
    assert "whole image" in result.message


@pytest.mark.parametrize("kind", ["uniform", "noise"])
def test_an_image_without_a_face_says_so_and_points_to_the_whole_image_switch(demo_app, predictor, kind):
    rng = np.random.default_rng(1)
    image = (
        np.full((240, 320, 3), 128, np.uint8) if kind == "uniform" else rng.integers(0, 256, (240, 320, 3), np.uint8)
    )

    result = demo_app.analyze(image, predictor, HaarFaceDetector())

    assert result.faces == []
    assert "No face found" in result.message and "The whole image is one face" in result.message
    np.testing.assert_array_equal(result.image, image)


def test_the_page_event_reads_an_upload_and_returns_image_chart_message_and_records(
    demo_app, tiny_dir, predictor, photo, tmp_path
):
    path = tmp_path / "face.png"
    Image.fromarray(photo).save(path)
    app = demo_app.DemoApp(str(tiny_dir))
    payload = {"path": str(path), "orig_name": "my face.png", "url": None}  # what Gradio sends with preprocess=False

    image, figure, message, records = app.classify(payload, False, str(tiny_dir))

    expected = demo_app.analyze(photo, predictor, HaarFaceDetector())
    np.testing.assert_array_equal(image, expected.image)
    assert records == expected.faces and message == expected.message
    assert len(figure.axes) == 1 and figure.axes[0].get_title(loc="left").startswith(f"Face 1: {records[0]['label']}")
    # a webcam snapshot sent as a data URL
    data_url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    assert app.classify({"path": None, "url": data_url}, False, str(tiny_dir))[3] == records
    # a path and the whole-image switch
    image, _, _, records = app.classify(str(path), True, str(tiny_dir))
    assert records[0]["box"] == [0, 0, 400, 320] and records[0]["label"] == predictor.predict([photo])[0]["label"]


def test_a_file_that_is_not_an_image_gets_a_message_without_the_server_path(demo_app, tiny_dir, tmp_path):
    path = tmp_path / "not_a_photo.png"
    path.write_text("a text file with an image's name")
    truncated = tmp_path / "half.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    app = demo_app.DemoApp(str(tiny_dir))

    uploads = [({"path": str(path), "orig_name": "not_a_photo.png"}, "not_a_photo.png")]
    uploads += [({"path": str(truncated), "orig_name": "half.png"}, "half.png")]
    uploads += [({"path": None, "url": "data:image/png;base64,%%%", "orig_name": "webcam.png"}, "webcam.png")]
    for payload, name in uploads:
        image, figure, message, records = app.classify(payload, False, str(tiny_dir))

        assert image is None and figure is None and records == []
        assert message.startswith("**Not an image**") and name in message, message
        assert str(tmp_path) not in message and "Traceback" not in message


def test_no_model_or_one_that_does_not_load_gets_a_message(demo_app, photo, tmp_path):
    app = demo_app.DemoApp(None, model_notice="no model ships with this install")
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()

    _, _, message, _ = app.classify(photo, False, "")
    assert message.startswith("**No model** (no model ships with this install)") and "Hub id" in message
    image, figure, message, records = app.classify(photo, False, str(not_a_model))
    assert message.startswith("**The model could not be loaded**") and "config.json" in message
    assert figure is None and records == []
    np.testing.assert_array_equal(image, photo)  # the photo stays on the page


def test_without_a_shipped_model_the_page_says_so_and_a_model_flag_wins(demo_app, monkeypatch, tmp_path):
    def no_model():
        raise FileNotFoundError("this checkout ships no default model; pass --model DIR_OR_HUB_ID")

    monkeypatch.setattr(modeling, "default_model_dir", no_model)
    assert demo_app.resolve_model(None) == (None, "this checkout ships no default model; pass --model DIR_OR_HUB_ID")
    assert demo_app.resolve_model("user/vit-fer") == ("user/vit-fer", None)
    monkeypatch.setattr(modeling, "default_model_dir", lambda: tmp_path / "shipped")
    assert demo_app.resolve_model(None) == (str(tmp_path / "shipped"), None)


def test_the_page_lays_out_the_photo_switch_model_box_and_results(demo_app, tiny_dir):
    pytest.importorskip("gradio", reason='gradio absent (pip install -e ".[demo]")')
    page = demo_app.DemoApp(str(tiny_dir)).build()
    ids = {block.elem_id for block in page.blocks.values()}
    assert {"photo", "whole-image", "model", "annotated", "message", "scores", "details"} <= ids
    assert "notice" not in ids
    notice = demo_app.DemoApp(None, model_notice="nothing in modeling/default_model").build()
    assert "notice" in {block.elem_id for block in notice.blocks.values()}


def test_the_charts_follow_the_model_class_order_and_stop_at_the_cap(demo_app):
    names = ["neutral", "happiness", "surprise"]
    faces = [{"box": [0, 0, 9, 9], "label": "surprise", "score": 0.7, "scores": dict(zip(names, [0.1, 0.2, 0.7]))}] * 5

    figure = demo_app.scores_figure(faces, max_charts=3)

    assert len(figure.axes) == 3
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == names
    assert [round(p.get_width(), 2) for p in figure.axes[0].patches] == [0.1, 0.2, 0.7]
    assert figure.get_suptitle() == "the 3 largest of 5 faces"


def test_a_large_photo_gets_fer_predicts_faces_in_its_own_pixels_and_is_shown_at_most_max_side(
    demo_app, tiny_dir, predictor, tmp_path
):
    data = pytest.importorskip("skimage.data", reason="scikit-image (the dev extra) provides the astronaut photo")
    big = np.full((3000, 4000, 3), 100, np.uint8)  # a 4:3 phone photo, the astronaut upscaled in its middle
    big[:, 500:3500] = cv2.resize(data.astronaut(), (3000, 3000), interpolation=cv2.INTER_CUBIC)
    Image.fromarray(big).save(tmp_path / "big.png")

    result = demo_app.analyze(big, predictor, HaarFaceDetector())

    # the detector's own downscale, as fer-predict's: one face, boxed in the photo's pixels
    assert (
        fer_predict([str(tmp_path / "big.png"), "--output", str(tmp_path / "o.jsonl"), "--model", str(tiny_dir)]) == 0
    )
    expected = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [f["box"] for f in result.faces] == [e["box"] for e in expected] and len(expected) == 1
    assert result.image.shape == (960, 1280, 3)  # the page shows at most MAX_SIDE
    x, y, w, h = (round(v * 1280 / 4000) for v in result.faces[0]["box"])
    assert tuple(result.image[y + h // 2, x]) == GREEN


def test_the_flags_parse_and_a_bad_port_or_margin_is_a_usage_error(demo_app):
    parser = ScriptArgumentParser(demo_app.DemoArguments)
    (args,) = parse_script_args(parser, ["--model", "m", "--port", "7861", "--margin", "0.3"])
    assert (args.model, args.port, args.margin, args.host, args.device) == ("m", 7861, 0.3, None, "cpu")
    for argv in (["--port", "70000"], ["--margin", "-1"], ["--prot", "1"]):
        with pytest.raises(UsageError):
            parse_script_args(parser, argv)


def test_the_space_files_name_gradio_app_py_and_the_inference_dependencies():
    readme = (ROOT / "demo" / "README.md").read_text()
    assert readme.startswith("---\n")
    front = dict(
        line.split(":", 1)
        for line in readme.split("---\n")[1].splitlines()
        if ":" in line and not line.startswith(" ")
    )
    front = {k.strip(): v.strip().strip('"') for k, v in front.items()}
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py" and (ROOT / "demo" / front["app_file"]).is_file()
    assert len(front["short_description"]) <= 60  # the Hub refuses longer ones
    gradio = pytest.importorskip("gradio", reason='gradio absent (pip install -e ".[demo]")')
    assert front["sdk_version"].split(".")[0] == gradio.__version__.split(".")[0]  # the major version tested here
    requirements = (ROOT / "demo" / "requirements.txt").read_text()
    names = {line.split(">")[0].split("=")[0].split("<")[0].strip() for line in requirements.splitlines()}
    assert {"torch", "transformers", "opencv-python-headless", "matplotlib", "pillow", "numpy"} <= names


def test_the_queue_flags_parse_and_the_four_triggers_share_one_concurrency_group(demo_app, tiny_dir):
    gradio = pytest.importorskip("gradio", reason='gradio absent (pip install -e ".[demo]")')
    parser = ScriptArgumentParser(demo_app.DemoArguments)
    (args,) = parse_script_args(parser, ["--concurrency_limit", "2", "--queue_size", "0", "--torch_threads", "1"])
    assert (args.concurrency_limit, args.queue_size, args.torch_threads) == (2, 0, 1)
    # The measured default (results/demo_load.json): two photos at once, the cores shared among them.
    (default,) = parse_script_args(parser, [])
    assert (default.concurrency_limit, default.queue_size, default.torch_threads) == (2, 32, None)
    assert demo_app.page_threads(None, 2, 2) == 1 and demo_app.page_threads(None, 1, 2) == 2
    assert demo_app.page_threads(None, 4, 2) == 1 and demo_app.page_threads(3, 2, 2) == 3  # asked for: kept
    for argv in (["--concurrency_limit", "0"], ["--queue_size", "-1"], ["--torch_threads", "0"]):
        with pytest.raises(UsageError):
            parse_script_args(parser, argv)
    page = demo_app.DemoApp(str(tiny_dir)).build()
    assert isinstance(page, gradio.Blocks)
    # one group: an upload and a click on the button do not run at once beyond the page's limit
    assert [fn.concurrency_id for fn in page.fns.values()] == ["classify"] * 4
