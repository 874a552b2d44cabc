"""bench/demo_page.py: upload-to-result timings of the demo page in Debian's Chromium, and its screenshot."""

import json
import sys
from pathlib import Path

from PIL import Image

from tests.test_demo_browser import _require_browser
from tests.tiny_classifier import save_tiny_classifier

ROOT = Path(__file__).resolve().parents[1]


def test_demo_page_bench_times_every_upload_and_keeps_a_screenshot_of_the_labelled_photo(tmp_path, ferplus_faces):
    _require_browser()  # skips without Chromium, fails under CI=true
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import demo_page
    finally:
        sys.path.remove(str(ROOT / "bench"))
    model = save_tiny_classifier(tmp_path / "model", calibration=ferplus_faces[0][:64])
    result = demo_page.main(
        ["--model", str(model), "--repeats", "2", "--threads", "1", "--out", str(tmp_path / "out")]
    )
    assert json.loads((tmp_path / "out" / "demo_page.json").read_text()) == result
    timings = result["upload_to_result_s"]
    assert len(timings["all"]) == 2 and all(0 < t < 60 for t in timings["all"])
    assert timings["median_after_first"] == timings["all"][1]
    assert "face found" in result["message"] and result["same_answer_every_time"]  # the astronaut's face, labelled
    screenshot = Image.open(tmp_path / "out" / "demo_page.png")
    assert screenshot.size[0] >= 1000 and (tmp_path / "out" / "demo_page.png").stat().st_size > 10_000
