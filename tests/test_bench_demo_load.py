"""bench/demo_load.py: the demo page driven by concurrent clients over its HTTP API, on loopback."""

import concurrent.futures
import json
import sys
from pathlib import Path

import pytest

from tests.tiny_classifier import save_tiny_classifier

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_load():
    pytest.importorskip("gradio_client", reason='gradio absent (pip install -e ".[demo]")')
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import demo_load
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return demo_load


class FakeJob:
    def __init__(self, outcome):
        self.outcome, self.cancelled = outcome, False

    def result(self, timeout=None):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def cancel(self):
        self.cancelled = True


class FakeClient:
    def __init__(self, outcome):
        self.job = FakeJob(outcome)

    def submit(self, *args, api_name=None):
        assert api_name == "/classify"  # the photo's change event, as an upload in the browser triggers it
        return self.job


def test_two_clients_upload_real_photos_to_the_page_with_no_error_and_the_json_says_so(demo_load, tmp_path):
    model = save_tiny_classifier(tmp_path / "model")
    out = tmp_path / "demo_load.json"

    argv = ["--model", str(model), "--clients", "2", "--uploads", "2", "--settings", "1:1", "--sizes", "512"]
    result = demo_load.main(argv + ["--out", str(out)])

    assert json.loads(out.read_text()) == result
    assert result["clients"] == 2 and result["machine"]["cores"] >= 1 and result["command"].startswith("python bench")
    assert set(result["photos"]) == {"astronaut_512.jpg", "grace_hopper_512.jpg"}
    (setting,) = result["settings"]
    assert setting["queue"] == {"default_concurrency_limit": 1, "max_size": 32, "concurrency_count": None}
    assert setting["torch_threads"] == 1  # read back from the page's log: the flag reached torch
    assert (setting["uploads"], setting["answered"], setting["errors"], setting["timeouts"]) == (4, 4, 0, 0)
    latency = setting["latency_s"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["max"] < 60
    assert setting["throughput_uploads_per_s"] > 0 and setting["load_average_1min"]["before"] >= 0
    # the astronaut's face is found at 512 px, as a user's upload would be
    assert setting["answers_alone"]["astronaut_512.jpg"].startswith("**1 face found**")
    assert result["chosen"]["concurrency_limit"] == 1 and result["chosen"]["errors"] == 0


def test_an_error_answer_of_the_page_counts_as_an_error_and_a_late_one_as_a_cancelled_timeout(demo_load, tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"not read by the fake client")
    image = tmp_path / "image.png"
    image.write_bytes(b"png")

    message, ok = demo_load.send(FakeClient((str(image), None, "**1 face found**\n\n1. x", [])), photo, "m", 5)
    assert message.startswith("**1 face found**") and ok.error is None and ok.seconds >= 0

    broken = (str(image), None, "**Something went wrong** with p.jpg: RuntimeError: boom", [])
    _, failed = demo_load.send(FakeClient(broken), photo, "m", 5)
    assert failed.error == "the page answered: **Something went wrong** with p.jpg: RuntimeError: boom"

    late = FakeClient(concurrent.futures.TimeoutError())
    message, timed_out = demo_load.send(late, photo, "m", 5)
    assert message is None and timed_out.timeout and late.job.cancelled and timed_out.seconds is None

    _, refused = demo_load.send(FakeClient(ConnectionError("refused")), photo, "m", 5)
    assert refused.error == "ConnectionError: refused"

    _, empty = demo_load.send(FakeClient((None, None, "**1 face found**", [])), photo, "m", 5)
    assert empty.error == "the answer holds no annotated image"


def test_a_setting_that_is_not_limit_colon_threads_or_a_queue_smaller_than_the_clients_is_a_usage_error(
    demo_load, capsys
):
    assert demo_load.parse_setting("2:1") == (2, 1)
    for argv in (["--settings", "2"], ["--settings", "0:1"], ["--clients", "8", "--queue_size", "4"]):
        with pytest.raises(SystemExit) as exit_info:
            demo_load.main(argv)
        assert exit_info.value.code == 2
    assert "--queue_size 4 is below --clients 8" in capsys.readouterr().err
