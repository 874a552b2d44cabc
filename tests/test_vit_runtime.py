"""The plain-torch ViT runtime (modeling.inference.vit_runtime): transformers' logits without importing transformers,
what it leaves to transformers, and the int8 predictor running several faces at once."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import modeling
from modeling.inference.predictor import FERPredictor, NotAnImageClassifierError
from modeling.inference.vit_runtime import WEIGHTS_FILE, load_plain_vit, why_not_plain
from modeling.labels import FERPLUS_LABELS
from modeling.models.sizes import image_processor_for
from modeling.precision import native_bf16_units
from tests.test_inference import WIDE_ENOUGH_FOR_INT8, save_vit_64
from tests.tiny import tiny_vit_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


def save_vit(path: Path, image_size=64, patch_size=8, seed=0, **overrides) -> Path:
    """A random ViT classifier with FER+ labels; ``image_size`` and ``patch_size`` an int or ``[h, w]``."""
    from transformers import ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = tiny_vit_config(FERPLUS_LABELS, **overrides)
    config.image_size, config.patch_size = image_size, patch_size  # vit_config checks square sizes only
    ViTForImageClassification(config).save_pretrained(path)
    if isinstance(image_size, int):
        image_processor_for(image_size).save_pretrained(path)
    else:
        size = {"height": image_size[0], "width": image_size[1]}
        ViTImageProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.25] * 3).save_pretrained(path)
    return Path(path)


CONFIGS = {
    "tiny_64px": {},
    "no_qkv_bias_eps_1e-6": {"qkv_bias": False, "layer_norm_eps": 1e-6, "intermediate_size": 96},
    "rectangular_64x48_patch_8x6": {"image_size": [64, 48], "patch_size": [8, 6], "num_attention_heads": 4},
    "wide_for_int8": WIDE_ENOUGH_FOR_INT8,
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_plain_runtime_gives_the_logits_of_transformers_on_real_faces(tmp_path, ferplus_faces, name, precision):
    path = save_vit(tmp_path / name, **CONFIGS[name])
    assert why_not_plain(path) is None
    faces = list(ferplus_faces[0][:48])
    ours = FERPredictor(path, device="cpu", precision=precision, runtime="plain")
    theirs = FERPredictor(path, device="cpu", precision=precision)  # the library's default: transformers
    assert (ours.runtime, theirs.runtime) == ("plain", "transformers")
    assert type(theirs.model).__name__ == "ViTForImageClassification"
    pixels = theirs.preprocess(faces)
    assert torch.equal(ours.preprocess(faces), pixels)  # the image processor's settings, read from its JSON
    reference = theirs.logits(pixels)
    assert (reference - reference.mean(0)).abs().max() > 0.01  # the logits depend on the face (tolerance: 1e-5)
    torch.testing.assert_close(ours.logits(pixels), reference, rtol=0, atol=1e-5)
    assert torch.equal(ours.logits(pixels).argmax(1), reference.argmax(1))


def test_the_shipped_model_runs_plain_with_the_logits_of_transformers(ferplus_faces):
    from transformers import AutoModelForImageClassification

    path = modeling.default_model_dir()
    assert why_not_plain(path) is None
    faces = list(ferplus_faces[0][:128])
    predictor = FERPredictor(path, device="cpu", precision="fp32", runtime="auto")
    assert predictor.runtime == "plain" and predictor.grayscale_input
    assert predictor.labels == list(FERPLUS_LABELS)
    pixels = predictor.preprocess(faces)
    with torch.inference_mode():
        reference = AutoModelForImageClassification.from_pretrained(path).eval()(pixel_values=pixels).logits
    torch.testing.assert_close(predictor.logits(pixels), reference, rtol=0, atol=1e-5)


def test_the_fused_query_key_value_weights_are_the_three_of_the_checkpoint(tmp_path):
    from safetensors.torch import load_file

    path = save_vit(tmp_path / "m", num_hidden_layers=2)
    module, saved = load_plain_vit(path), load_file(str(path / WEIGHTS_FILE))
    prefix = "vit.encoder.layer.1.attention.attention."
    q, k, v = (saved[f"{prefix}{n}.weight"] for n in ("query", "key", "value"))
    assert torch.equal(module.blocks[1].qkv.weight, torch.cat([q, k, v]))
    assert torch.equal(module.classifier.bias, saved["classifier.bias"])
    assert not module.training


def _edit_json(path: Path, name: str, **changes) -> None:
    data = json.loads((path / name).read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    (path / name).write_text(json.dumps(data))


def _fp16_weights(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    save_file({k: v.half() for k, v in load_file(str(path / WEIGHTS_FILE)).items()}, str(path / WEIGHTS_FILE))


def _extra_tensor(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path / WEIGHTS_FILE))
    tensors["vit.pooler.dense.weight"] = torch.zeros(32, 32)
    save_file(tensors, str(path / WEIGHTS_FILE), metadata={"format": "pt"})


EDITS = {
    "activation": (lambda p: _edit_json(p, "config.json", hidden_act="gelu_new"), "activation 'gelu_new'"),
    "fp16_weights": (_fp16_weights, "'F16'), expected (1, 1, 32) float32"),
    "processor_default_left_out": (
        lambda p: _edit_json(p, "preprocessor_config.json", image_std=None),
        "leaves ['image_std'] to the class defaults",
    ),
    "other_resampling": (
        lambda p: _edit_json(p, "preprocessor_config.json", resample=1),
        "other than bilinear or bicubic",
    ),
    "extra_tensor": (_extra_tensor, "unexpected ['vit.pooler.dense.weight']"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_what_the_plain_runtime_does_not_cover_runs_through_transformers_and_the_log_says_why(
    tmp_path, ferplus_faces, edit, caplog
):
    change, reason = EDITS[edit]
    path = save_vit(tmp_path / edit)
    change(path)
    assert reason in why_not_plain(path)
    with pytest.raises(NotAnImageClassifierError, match="cannot run without transformers"):
        FERPredictor(path, device="cpu", runtime="plain")
    with caplog.at_level("INFO", logger="modeling.inference.predictor"):
        predictor = FERPredictor(path, device="cpu", precision="fp32", runtime="auto")
    assert predictor.runtime == "transformers" and reason in predictor.runtime_why
    assert reason in caplog.text
    assert predictor.predict_proba(list(ferplus_faces[0][:4])).shape == (4, len(FERPLUS_LABELS))


def test_a_hub_id_or_a_folder_without_weights_is_left_to_transformers(tmp_path):
    assert "not a local directory" in why_not_plain("someone/some-fer-model")
    path = save_vit(tmp_path / "m")
    (path / WEIGHTS_FILE).unlink()
    assert why_not_plain(path) == f"no {WEIGHTS_FILE}"
    with pytest.raises(ValueError, match="runtime must be one of"):
        FERPredictor(path, runtime="onnxruntime")


def test_fer_predict_classifies_a_local_vit_without_importing_transformers(tmp_path, ferplus_faces):
    model = save_vit(tmp_path / "model", **WIDE_ENOUGH_FOR_INT8)
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, face in enumerate(ferplus_faces[0][:6]):
        Image.fromarray(face).save(folder / f"{i}.png")
    code = (
        "import json, sys\n"
        "from modeling.inference.fer_predict import main\n"
        "rc = main(sys.argv[1:])\n"
        "print(json.dumps([m for m in ('transformers', 'torchvision', 'scipy') if m in sys.modules]))\n"
        "sys.exit(rc)\n"
    )
    outputs = {}
    for runtime in ("auto", "transformers"):
        out = tmp_path / f"{runtime}.jsonl"
        argv = [str(folder), "--no_detect", "--model", str(model), "--output", str(out), "--runtime", runtime]
        done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        imported = json.loads(done.stdout.strip().splitlines()[-1])
        assert ("transformers" in imported) == (runtime == "transformers")
        outputs[runtime] = [json.loads(line) for line in out.read_text().splitlines()]
        if runtime == "auto":
            assert imported == []  # nor torchvision or scipy, which transformers' model code brings
            assert "fer-predict: runtime: plain torch ViT" in done.stderr
            # nothing mocked in a child process: it says what this CPU runs by default
            arithmetic = "bf16 autocast" if native_bf16_units() else "int8 dynamic quantization"
            assert f"fer-predict: precision: {arithmetic}" in done.stderr
    assert [r["label"] for r in outputs["auto"]] == [r["label"] for r in outputs["transformers"]]
    for ours, theirs in zip(outputs["auto"], outputs["transformers"]):
        assert ours["file"] == theirs["file"]
        np.testing.assert_allclose(list(ours["scores"].values()), list(theirs["scores"].values()), atol=1e-5)


def test_int8_runs_faces_at_once_on_one_thread_each_with_the_logits_of_one_at_a_time(
    tmp_path, ferplus_faces, keep_torch_threads
):
    path = save_vit_64(tmp_path / "wide", **WIDE_ENOUGH_FOR_INT8)
    faces = list(ferplus_faces[0][:24])
    # recheck=False: the int8 forward passes alone (float32 re-runs of close calls change scores after the first faces)
    predictor = FERPredictor(path, device="cpu", precision="int8", runtime="plain", recheck=False)
    torch.set_num_threads(1)
    assert predictor.images_at_once == 1
    one_at_a_time = predictor.predict_proba(faces)
    torch.set_num_threads(2)
    assert predictor.images_at_once == 2
    seen: set[int] = set()
    forward = predictor._logits

    def spy(x):
        seen.add(threading.get_ident())
        assert torch.get_num_threads() == 1  # each face on one thread
        return forward(x)

    predictor._logits = spy
    np.testing.assert_array_equal(predictor.predict_proba(faces), one_at_a_time)
    assert len(seen) == 2 and threading.get_ident() not in seen
    assert torch.get_num_threads() == 2  # the caller's count is given back
    counts = []
    fresh = threading.Thread(target=lambda: counts.append(torch.get_num_threads()))
    fresh.start()
    fresh.join()
    assert counts == [2]  # and so is the default of threads started later
    fp32 = FERPredictor(path, device="cpu", precision="fp32", runtime="plain")
    assert fp32.images_at_once == 1  # float32 runs batches, on all threads
