"""Driving the demo page in a real browser: Debian's Chromium through selenium, against ``demo/app.py`` on loopback.

Used by the browser test (tests/test_demo_browser.py) and the page's timing (bench/demo_page.py). Chromium and
ChromeDriver come from Debian's packages (``apt-get install -y chromium chromium-driver``); selenium is given both
paths, so nothing downloads a browser or a driver. Not needed by the page itself (a Space never imports it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
MESSAGES = ("face found", "No face", "Not an image", "went wrong")  # how every answer of the page begins or reads


def missing() -> list[str]:
    """What the browser tools lack here, as phrases (empty when Chromium, its driver, selenium and gradio are all
    there)."""
    what = []
    absent = [path for path in (CHROMIUM, CHROMEDRIVER) if not (Path(path).is_file() and os.access(path, os.X_OK))]
    if absent:
        what.append(f"{', '.join(absent)} not found (apt-get install -y chromium chromium-driver)")
    modules = [name for name in ("selenium", "gradio") if not _importable(name)]
    if modules:
        what.append(f'{", ".join(modules)} not installed (pip install -e ".[dev]")')
    return what


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppFailed(RuntimeError):
    """``demo/app.py`` exited or served nothing in time; the message holds its log."""


@contextlib.contextmanager
def serve(folder: Path, model: str | None = None, threads: int | None = 1, args: Sequence[str] = ()) -> Iterator[str]:
    """``python demo/app.py [--model MODEL] --port P [ARGS]`` in a subprocess, logging to ``folder/server.log``;
    yields the page's URL once it answers, and stops the app on exit. ``model`` None: the page's default (the shipped
    model). ``threads``: OMP_NUM_THREADS of the app unless already set (None: torch's default). ``args``: more flags
    of demo/app.py (``--concurrency_limit 2``)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT")}
    env.update(GRADIO_TEMP_DIR=str(folder / "gradio"), GRADIO_ANALYTICS_ENABLED="False")
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    command = [sys.executable, str(ROOT / "demo" / "app.py"), "--port", str(port)]
    if model is not None:
        command += ["--model", str(model)]
    command += list(args)
    log_path = folder / "server.log"
    url = f"http://127.0.0.1:{port}/"  # the default --host: loopback
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if process.poll() is not None:
                    raise AppFailed(f"demo/app.py exited with {process.returncode}:\n{log_path.read_text()}")
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AppFailed(f"demo/app.py served nothing in {START_TIMEOUT} s:\n{log_path.read_text()}")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def chromium(profile: Path):
    """A headless selenium driver of Debian's Chromium with a fresh profile in ``profile``; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # Debian's; with both paths given selenium downloads nothing
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def open_page(driver, url: str):
    """Loads the page; returns its photo upload's file input."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    return WebDriverWait(driver, START_TIMEOUT).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]")
    )


def wait_for_text(driver, css: str, *needles: str, timeout: float = RESULT_TIMEOUT) -> str:
    """The text of ``css`` once it contains one of ``needles``."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d):
        try:
            text = d.find_element(By.CSS_SELECTOR, css).text
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return text if any(n in text for n in needles) else False

    return WebDriverWait(driver, timeout).until(found, f"no {needles} in {css}")


def upload(driver, url: str, photo: Path) -> tuple[str, float]:
    """Opens the page, uploads ``photo`` and waits for the page's answer: (the message, seconds from the upload
    to the answer, as a person waits for it)."""
    field = open_page(driver, url)
    start = time.perf_counter()
    field.send_keys(str(photo))
    message = wait_for_text(driver, "#message", *MESSAGES)
    return message, time.perf_counter() - start
