import os
import subprocess
import sys
from pathlib import Path

import pytest

from modeling.hub.push import UPLOAD_PATTERNS, check_model_dir
from tests.fake_hub import FakeHub
from tests.tiny_classifier import save_tiny_classifier

FAKE_TOKEN = "hf_testTOKENdoNotLeak0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_dir(tmp_path):
    out = save_tiny_classifier(tmp_path / "model")
    (out / "README.md").write_text("---\nlicense: apache-2.0\n---\n# card\n")
    (out / "confusion_matrix_ferplus_test.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (out / "hardest_ferplus_test.png").write_bytes(b"dataset images: never published")
    (out / "training_args.bin").write_bytes(b"\0" * 16)
    (out / "checkpoint-10").mkdir()
    (out / "checkpoint-10" / "model.safetensors").write_bytes(b"\0" * 16)
    return out


def _push(args, endpoint, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_TOKEN=FAKE_TOKEN,
        HF_HOME=str(tmp_path / "hf_home"),  # no stored login of the machine interferes
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_VERBOSITY="debug",  # the token must not leak even in debug logs
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT),
    )
    return subprocess.run(
        [sys.executable, "-m", "modeling.hub.push", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def test_push_uploads_the_model_files_to_a_hub_endpoint_and_never_prints_the_token(model_dir, tmp_path):
    with FakeHub() as hub:
        proc = _push(
            [str(model_dir), "someone/fer-vit-tiny", "--private", "--commit_message", "Add model"],
            hub.endpoint,
            tmp_path,
        )

    assert proc.returncode == 0, proc.stderr
    assert hub.unexpected == []
    assert hub.repos["someone/fer-vit-tiny"]["visibility"] == "private"
    uploaded = hub.files["someone/fer-vit-tiny"]
    assert sorted(uploaded) == sorted(
        [
            "model.safetensors",
            "config.json",
            "preprocessor_config.json",
            "README.md",
            "confusion_matrix_ferplus_test.png",
        ]
    )
    for name, content in uploaded.items():
        assert content == (model_dir / name).read_bytes(), name
    assert hub.commits[-1]["summary"] == "Add model"
    assert hub.auth_headers and all(h == f"Bearer {FAKE_TOKEN}" for h in hub.auth_headers)
    assert FAKE_TOKEN not in proc.stdout + proc.stderr
    assert FAKE_TOKEN[3:] not in proc.stdout + proc.stderr
    assert "pushed" in proc.stdout


def test_push_refuses_a_directory_without_weights_or_card(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json, README.md"):
        check_model_dir(tmp_path)


def test_the_upload_patterns_leave_out_dataset_image_grids():
    import fnmatch

    assert not any(fnmatch.fnmatch("hardest_ferplus_test.png", p) for p in UPLOAD_PATTERNS)
