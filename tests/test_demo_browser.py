"""The demo page in a real browser: Debian's Chromium, driven by selenium, against ``python demo/app.py`` on loopback.

Chromium comes from Debian's packages (``apt-get install -y chromium chromium-driver``; ``.ci/run`` installs them);
nothing here downloads a browser or a driver. Without them the tests skip, except under ``CI=true``, where they fail.
The page runs a tiny stand-in classifier saved in process (tests/tiny_classifier.py), as no trained model ships yet.
"""

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeling.faces import HaarFaceDetector
from modeling.inference import FERPredictor
from tests.test_demo import GREEN, ROOT, face_photo, load_demo_app
from tests.tiny_classifier import save_tiny_classifier

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# headless, and no calls home: without the networking flags Chromium keeps trying hosts this machine cannot reach
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1300",
)
START_TIMEOUT = 120  # seconds for the app to serve its page (importing gradio and torch on a busy 2-core machine)
RESULT_TIMEOUT = 60  # seconds from upload to result


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not (Path(path).is_file() and os.access(path, os.X_OK))]
    modules = [name for name in ("selenium", "gradio") if not _importable(name)]
    if not missing and not modules:
        return
    what = []
    if missing:
        what.append(f"{', '.join(missing)} not found (apt-get install -y chromium chromium-driver)")
    if modules:
        what.append(f'{", ".join(modules)} not installed (pip install -e ".[dev]")')
    message = "no browser for the demo page test: " + "; ".join(what)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI=true requires them (.ci/run installs them)")
    pytest.skip(message)


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, ferplus_faces):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny_fer"), calibration=ferplus_faces[0][:64])


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dir):
    """``python demo/app.py --model TINY --port P`` in a subprocess; yields the page's URL."""
    _require_browser()
    folder = tmp_path_factory.mktemp("demo_server")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT")}
    env.update(GRADIO_TEMP_DIR=str(folder / "gradio"), GRADIO_ANALYTICS_ENABLED="False")
    env.setdefault("OMP_NUM_THREADS", "1")
    log = open(folder / "server.log", "w")  # noqa: SIM115  (closed below)
    command = [sys.executable, str(ROOT / "demo" / "app.py"), "--model", str(tiny_dir), "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"  # the default --host: loopback
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"demo/app.py exited with {process.returncode}:\n{(folder / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"demo/app.py served nothing in {START_TIMEOUT} s:\n{(folder / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # Debian's; with both paths given selenium downloads nothing
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _open(browser, url):
    """Loads the page; returns its photo upload's file input."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    return WebDriverWait(browser, START_TIMEOUT).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]")
    )


def _wait_for_text(browser, css: str, *needles: str) -> str:
    """The text of ``css`` once it contains one of ``needles``."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(driver):
        try:
            text = driver.find_element(By.CSS_SELECTOR, css).text
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return text if any(n in text for n in needles) else False

    return WebDriverWait(browser, RESULT_TIMEOUT).until(found, f"no {needles} in {css}")


def test_an_uploaded_photo_comes_back_with_its_face_boxed_and_labelled_as_the_predictor_labels_it(
    server, browser, tiny_dir, ferplus_faces, tmp_path, record_property
):
    from selenium.webdriver.common.by import By

    demo_app = load_demo_app()
    photo = face_photo(ferplus_faces[0])
    path = tmp_path / "face.png"
    Image.fromarray(photo).save(path)
    predictor = FERPredictor(tiny_dir, device="cpu")
    expected = demo_app.analyze(photo, predictor, HaarFaceDetector())
    (face,) = expected.faces
    assert face["label"] in predictor.labels

    timings = []
    for _ in range(2):  # the first upload warms the page and the model up; the second is the steady state
        upload = _open(browser, server)
        start = time.perf_counter()
        upload.send_keys(str(path))
        message = _wait_for_text(browser, "#message", "face found", "No face", "Not an image", "went wrong")
        timings.append(time.perf_counter() - start)

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
    upload = _open(browser, server)
    upload.send_keys(str(text_as_png))

    message = _wait_for_text(browser, "#message", "Not an image", "went wrong", "face found")
    assert message.startswith("Not an image") and "not_a_photo.png is not an image" in message, message
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Traceback" not in body and str(tmp_path) not in body
    browser.save_screenshot(str(tmp_path / "not_an_image.png"))

    notes = tmp_path / "notes.txt"  # refused by Gradio's own file-type check in the page, before any upload
    shutil.copy(text_as_png, notes)
    upload = _open(browser, server)
    upload.send_keys(str(notes))
    assert "Invalid file type: notes.txt" in _wait_for_text(browser, "body", "Invalid file type")
