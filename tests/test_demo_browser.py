"""The demo page in a real browser: Debian's Chromium, driven by selenium, against ``python demo/app.py`` on loopback.

Chromium comes from Debian's packages (``apt-get install -y chromium chromium-driver``; ``.ci/run`` installs them);
nothing here downloads a browser or a driver. Without them the tests skip, except under ``CI=true``, where they fail.
The page runs on its default model, the one shipped in the package (``modeling.default_model_dir()``), as a user's
``python demo/app.py`` does.
"""

import importlib.util
import io
import os
import re
import shutil
import sys
import urllib.request

import numpy as np
import pytest
from PIL import Image

import modeling
from modeling.inference.faces import HaarFaceDetector
from modeling.inference.predictor import FERPredictor
from tests.test_demo import GREEN, ROOT, face_photo, load_demo_app


def load_browser_module():
    """demo/browser.py as the module ``demo_browser`` (demo/ is a Space's folder, not a package)."""
    if "demo_browser" not in sys.modules:
        spec = importlib.util.spec_from_file_location("demo_browser", ROOT / "demo" / "browser.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["demo_browser"] = module
        spec.loader.exec_module(module)
    return sys.modules["demo_browser"]


drive = load_browser_module()


def _require_browser() -> None:
    what = drive.missing()
    if not what:
        return
    message = "no browser for the demo page test: " + "; ".join(what)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI=true requires them (.ci/run installs them)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python demo/app.py --port P`` (no ``--model``: the shipped model) in a subprocess; yields the page's URL."""
    _require_browser()
    try:
        with drive.serve(tmp_path_factory.mktemp("demo_server")) as url:
            yield url
    except drive.AppFailed as err:
        pytest.fail(str(err))


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    driver = drive.chromium(tmp_path_factory.mktemp("chromium_profile"))
    yield driver
    driver.quit()


def test_an_uploaded_photo_comes_back_with_its_face_boxed_and_labelled_as_the_predictor_labels_it(
    server, browser, ferplus_faces, tmp_path, record_property
):
    from selenium.webdriver.common.by import By

    demo_app = load_demo_app()
    photo = face_photo(ferplus_faces[0])
    path = tmp_path / "face.png"
    Image.fromarray(photo).save(path)
    predictor = FERPredictor(modeling.default_model_dir(), device="cpu")  # the model the page runs
    expected = demo_app.analyze(photo, predictor, HaarFaceDetector())
    (face,) = expected.faces
    assert face["label"] in predictor.labels

    timings = []
    for _ in range(2):  # the first upload warms the page and the model up; the second is the steady state
        message, seconds = drive.upload(browser, server, path)
        timings.append(seconds)

        # the top label as FERPredictor gives it for the same crop; the score to float noise between two processes
        match = re.search(r"^(\w+) (\d\.\d\d) at \((\d+), (\d+), (\d+), (\d+)\)$", message, re.MULTILINE)
        assert "1 face found" in message and match, message
        assert match[1] == face["label"] and abs(float(match[2]) - face["score"]) <= 0.03, (message, face)
        assert [int(v) for v in match.groups()[2:]] == face["box"]
        shown = browser.find_element(By.CSS_SELECTOR, "#annotated img")
        with urllib.request.urlopen(shown.get_attribute("src"), timeout=10) as response:
            annotated = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
        assert annotated.shape == photo.shape
        x, y, w, h = face["box"]
        assert tuple(annotated[y + h // 2, x]) == GREEN  # the box, as drawn in expected.image
        np.testing.assert_array_equal(annotated[y + 20 :], expected.image[y + 20 :])  # all but the label's text
        chart = browser.find_element(By.CSS_SELECTOR, "#scores img")
        assert chart.get_property("naturalWidth") > 0 and chart.get_property("complete")

    screenshot = tmp_path / "demo_page.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    record_property("upload_to_result_s", [round(t, 2) for t in timings])
    record_property("screenshot", str(screenshot))
    print(f"\nupload to result: first {timings[0]:.2f} s, second {timings[1]:.2f} s; screenshot {screenshot}")


def test_a_file_that_is_not_an_image_shows_a_message_and_no_traceback(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    text_as_png = tmp_path / "not_a_photo.png"  # passes the browser's image/* filter, so the app reads it
    text_as_png.write_text("a text file with an image's name\n")
    message, _ = drive.upload(browser, server, text_as_png)
    assert message.startswith("Not an image") and "not_a_photo.png is not an image" in message, message
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Traceback" not in body and str(tmp_path) not in body
    browser.save_screenshot(str(tmp_path / "not_an_image.png"))

    notes = tmp_path / "notes.txt"  # refused by Gradio's own file-type check in the page, before any upload
    shutil.copy(text_as_png, notes)
    drive.open_page(browser, server).send_keys(str(notes))
    assert "Invalid file type: notes.txt" in drive.wait_for_text(browser, "body", "Invalid file type")
