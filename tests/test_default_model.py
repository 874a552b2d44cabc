"""The model shipped inside the package (modeling/inference/shipped.py), with a tiny stand-in: never in the real
checkout."""

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from packaging.version import Version
from PIL import Image

import modeling
from modeling.inference import shipped
from tests.tiny_classifier import save_tiny_classifier

ROOT = Path(__file__).resolve().parents[1]


def _installed_version(name: str) -> Version | None:
    try:
        return Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return None


def _stand_in(path: Path) -> Path:
    """A tiny classifier laid out as the shipped model will be: weights, configs, card and confusion matrix."""
    save_tiny_classifier(path)
    (path / "README.md").write_text("# Stand-in model card\n")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path / "confusion_matrix_test.png")
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of what a wheel is built from: pyproject.toml, README.md and modeling/ (without any default_model/)."""
    dst = tmp_path / "project"
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    shutil.copytree(ROOT / "modeling", dst / "modeling", ignore=shutil.ignore_patterns("__pycache__", "default_model"))
    return dst


def _default_model_dir_in(project: Path) -> subprocess.CompletedProcess:
    """``modeling.default_model_dir()`` as the copy in ``project`` answers it (printed, or its error)."""
    code = (
        "import modeling\n"
        "try:\n    print(modeling.default_model_dir())\n"
        "except FileNotFoundError as err:\n    print(f'FileNotFoundError: {err}')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (shipped.ENV_VAR, "PYTHONPATH")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_default_model_dir_is_the_default_model_folder_inside_the_package_once_a_model_ships(project):
    _stand_in(project / "modeling" / "default_model")
    assert _default_model_dir_in(project).stdout.strip() == str((project / "modeling" / "default_model").resolve())


def test_without_a_shipped_model_default_model_dir_raises_file_not_found_saying_to_pass_model(project):
    (project / "modeling" / "default_model").mkdir()
    (project / "modeling" / "default_model" / "config.json").write_text("{}")  # a config without weights is no model
    out = _default_model_dir_in(project).stdout
    assert out.startswith("FileNotFoundError: this version or checkout of fer-mae ships no default model")
    assert "pass --model DIR_OR_HUB_ID" in out


def test_the_environment_variable_replaces_the_default_model_and_must_point_to_one(tmp_path, monkeypatch):
    model_dir = save_tiny_classifier(tmp_path / "mine")
    monkeypatch.setenv(shipped.ENV_VAR, str(model_dir))
    assert modeling.default_model_dir() == model_dir.resolve()

    monkeypatch.setenv(shipped.ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{shipped.ENV_VAR}={tmp_path}: no model there"):
        modeling.default_model_dir()


def test_pipeline_loads_the_default_model_and_gives_the_models_own_probabilities(tmp_path, monkeypatch):
    from transformers import AutoImageProcessor, ViTForImageClassification, pipeline

    model_dir = _stand_in(tmp_path / "default_model")
    monkeypatch.setenv(shipped.ENV_VAR, str(model_dir))
    face = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8))

    classify = pipeline("image-classification", model=str(modeling.default_model_dir()), device="cpu")
    got = {r["label"]: r["score"] for r in classify(face, top_k=8)}

    model = ViTForImageClassification.from_pretrained(model_dir).eval()
    pixels = AutoImageProcessor.from_pretrained(model_dir)(face, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probs = model(pixel_values=pixels).logits.softmax(-1)[0]
    expected = {model.config.id2label[i]: p for i, p in enumerate(probs.tolist())}
    assert got.keys() == expected.keys() and len(got) == 8
    torch.testing.assert_close(torch.tensor([got[k] for k in expected]), torch.tensor(list(expected.values())))


def test_a_wheel_built_from_the_project_holds_every_file_of_the_default_model(project, tmp_path):
    # pip with the build backend already installed (no build isolation: offline); setuptools is not imported here,
    # since its distutils shim refuses to load once the stdlib distutils has been imported in this process
    backend = _installed_version("setuptools")
    if importlib.util.find_spec("pip") is None or backend is None or backend < Version("77"):
        pytest.skip(f"needs pip and setuptools>=77 in this environment (setuptools: {backend})")
    model_dir = _stand_in(project / "modeling" / "default_model")
    wheels = tmp_path / "wheels"
    cmd = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index"]
    cmd += ["--disable-pip-version-check", "-w", str(wheels)]
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    (wheel,) = wheels.glob("fer_mae-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped_files = {n.removeprefix("modeling/default_model/") for n in zf.namelist() if "default_model/" in n}
        weights = zf.read("modeling/default_model/model.safetensors")
        config = json.loads(zf.read("modeling/default_model/config.json"))
    assert (
        shipped_files
        == {p.name for p in model_dir.iterdir()}
        == {
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
            "README.md",
            "confusion_matrix_test.png",
        }
    )
    assert weights == (model_dir / "model.safetensors").read_bytes()
    assert config["id2label"] == json.loads((model_dir / "config.json").read_text())["id2label"]
