import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modeling import precision
from modeling.inference.predictor import FERPredictor, NotAnImageClassifierError
from modeling.labels import FERPLUS_LABELS
from modeling.models.sizes import image_processor_for
from modeling.precision import INT8_MIN_HIDDEN, INT8_MIN_TOKENS, choose_inference_precision
from tests.tiny import tiny_mae_config, tiny_vit_config
from tests.tiny_classifier import save_tiny_classifier


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, ferplus_faces):
    images, _ = ferplus_faces
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny_fer"), calibration=images[:64])


def test_batched_predictor_gives_the_pipeline_labels_on_real_ferplus_faces(tiny_dir, ferplus_faces):
    from PIL import Image
    from transformers import pipeline

    images, _ = ferplus_faces
    faces = list(images[:256])
    ours = FERPredictor(tiny_dir, device="cpu", precision="fp32").predict(faces, batch_size=64)
    pipe = pipeline("image-classification", model=str(tiny_dir), device="cpu")
    theirs = pipe([Image.fromarray(f) for f in faces], top_k=len(FERPLUS_LABELS), batch_size=64)

    assert [o["label"] for o in ours] == [t[0]["label"] for t in theirs]
    assert len({o["label"] for o in ours}) >= 4, "the tiny model should spread its predictions over classes"
    for o, t in zip(ours, theirs):
        for entry in t:
            assert o["scores"][entry["label"]] == pytest.approx(entry["score"], abs=1e-4)


@pytest.mark.parametrize("resample", [2, 3], ids=["bilinear", "bicubic"])
def test_batched_preprocessing_equals_the_models_image_processor(tiny_dir, ferplus_faces, tmp_path, resample):
    import shutil

    from PIL import Image
    from transformers import AutoImageProcessor

    model = shutil.copytree(tiny_dir, tmp_path / "m")
    config = json.loads((model / "preprocessor_config.json").read_text())
    (model / "preprocessor_config.json").write_text(json.dumps({**config, "resample": resample}))
    images, _ = ferplus_faces
    crops = [images[0], np.repeat(images[1][:40, :44, None], 3, axis=2), images[2]]  # mixed sizes and channels
    crops.append(np.repeat(images[3][:20, :24, None], 3, axis=2))  # and one enlarged
    processor = AutoImageProcessor.from_pretrained(model)
    assert processor.resample == resample
    expected = processor([Image.fromarray(c) for c in crops], return_tensors="pt")["pixel_values"]
    got = FERPredictor(model, device="cpu", precision="fp32").preprocess(crops)
    # torch's antialiased kernels reproduce PIL's bilinear resize exactly and its bicubic one to within one grey
    # level at a few pixels (the rounding of the two implementations)
    level = 1 / 255 / min(config["image_std"])
    torch.testing.assert_close(got, expected, atol=1e-5 if resample == 2 else level + 1e-5, rtol=0)
    assert (got - expected).abs().mean() < 0.05 * level


def test_the_package_processor_resizes_as_the_training_transforms_do(ferplus_faces, tmp_path):
    """A model trained at 72 px on 48 px faces is served the faces its evaluation transform made: bicubic."""
    from transformers import ViTForImageClassification

    from modeling.training.fast_input import FaceBatchTransform, PixelCollator

    config = tiny_vit_config(FERPLUS_LABELS, image_size=72, patch_size=8)
    config.grayscale_input = True
    ViTForImageClassification(config).save_pretrained(tmp_path)
    processor = image_processor_for(72)
    processor.save_pretrained(tmp_path)
    assert processor.resample == 3
    images, _ = ferplus_faces
    faces = [torch.from_numpy(np.ascontiguousarray(im))[None] for im in images[:16]]  # uint8 [1, 48, 48], gray
    examples = FaceBatchTransform(72, "none", label_column=None)({"image": faces})["pixel_values"]
    trained_on = PixelCollator(processor.image_mean, processor.image_std)([{"pixel_values": f} for f in examples])
    served = FERPredictor(tmp_path, device="cpu", precision="fp32").preprocess(list(images[:16]))
    torch.testing.assert_close(served, trained_on["pixel_values"], atol=1e-5, rtol=0)


def test_bf16_predictor_keeps_the_float32_labels_or_falls_back_where_the_cpu_lacks_bf16(tiny_dir, ferplus_faces):
    from modeling.inference.predictor import cpu_has_bf16

    faces = list(ferplus_faces[0][:128])
    fp32 = FERPredictor(tiny_dir, device="cpu", precision="fp32").predict(faces)
    predictor = FERPredictor(tiny_dir, device="cpu", bf16=True)
    assert predictor.bf16 == cpu_has_bf16()
    bf16 = predictor.predict(faces)
    agree = np.mean([a["label"] == b["label"] for a, b in zip(fp32, bf16)])
    assert agree >= 0.95
    assert max(abs(a["score"] - b["score"]) for a, b in zip(fp32, bf16)) < 0.1  # bf16 keeps ~3 significant digits


def test_predictions_carry_every_class_score_in_label_order(tiny_dir, ferplus_faces):
    preds = FERPredictor(tiny_dir, device="cpu").predict(list(ferplus_faces[0][:3]))
    assert [list(p["scores"]) for p in preds] == [list(FERPLUS_LABELS)] * 3
    for p in preds:
        assert sum(p["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert p["score"] == max(p["scores"].values())


def test_a_saved_mae_for_pretraining_is_refused_as_not_an_image_classifier(tmp_path):
    from transformers import ViTMAEForPreTraining

    ViTMAEForPreTraining(tiny_mae_config()).save_pretrained(tmp_path)
    with pytest.raises(NotAnImageClassifierError, match="ViTMAEForPreTraining"):
        FERPredictor(tmp_path, device="cpu")


@pytest.mark.parametrize(
    "config",
    [{"hello": "world"}, {"model_type": "bert", "architectures": ["BertForMaskedLM"]}],
    ids=["random", "bert"],
)
def test_a_directory_with_a_foreign_config_is_refused_with_a_clear_error(tmp_path, config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(NotAnImageClassifierError, match=str(tmp_path)):
        FERPredictor(tmp_path, device="cpu")


def test_a_directory_without_config_is_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(NotAnImageClassifierError, match="no config.json"):
        FERPredictor(tmp_path, device="cpu")


# --- Grayscale input: a model trained on gray faces (config grayscale_input) gets colour crops as gray ---------------


def colour_crop_and_its_gray(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A strongly coloured ``[40, 40, 3]`` crop (red left half, blue right half, noise) and its BT.601 gray, as RGB."""
    from modeling.inference.faces import to_gray

    rng = np.random.default_rng(seed)
    crop = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
    crop[:, :20, 0] += 190
    crop[:, 20:, 2] += 190
    return crop, np.repeat(to_gray(crop)[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def gray_and_plain_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """The same tiny classifier twice: with ``grayscale_input: true`` in its config.json, and without."""
    from transformers import AutoConfig

    root = tmp_path_factory.mktemp("grayscale")
    plain = save_tiny_classifier(root / "plain")
    gray = save_tiny_classifier(root / "gray")
    config = AutoConfig.from_pretrained(gray)
    config.grayscale_input = True
    config.save_pretrained(gray)
    return gray, plain


def test_a_model_trained_on_gray_faces_gets_a_colour_crop_as_its_gray_version_and_says_so(gray_and_plain_dirs, caplog):
    gray_dir, _ = gray_and_plain_dirs
    assert json.loads((gray_dir / "config.json").read_text())["grayscale_input"] is True
    with caplog.at_level("INFO", logger="modeling.inference.predictor"):
        predictor = FERPredictor(gray_dir, device="cpu", precision="fp32")
    assert predictor.grayscale_input and "grayscale input" in caplog.text
    colour, gray = colour_crop_and_its_gray()
    pixels = predictor.preprocess([colour, gray, gray[:, :, 0]])
    assert torch.equal(pixels[0], pixels[1]) and torch.equal(pixels[1], pixels[2])
    logits = predictor.logits(pixels)
    assert torch.equal(logits[0], logits[1])


def test_a_model_without_the_flag_keeps_the_colours_and_both_agree_on_gray_crops(gray_and_plain_dirs, caplog):
    gray_dir, plain_dir = gray_and_plain_dirs
    with caplog.at_level("INFO", logger="modeling.inference.predictor"):
        plain = FERPredictor(plain_dir, device="cpu", precision="fp32")
    assert not plain.grayscale_input and "crops as given" in caplog.text
    colour, gray = colour_crop_and_its_gray()
    pixels = plain.preprocess([colour, gray])
    assert not torch.equal(pixels[0], pixels[1])
    logits = plain.logits(pixels)
    assert not torch.allclose(logits[0], logits[1], atol=1e-5)
    # on a crop that already is gray the flag changes nothing: same pixels, same weights, same logits
    flagged = FERPredictor(gray_dir, device="cpu", precision="fp32")
    assert torch.equal(flagged.preprocess([gray]), pixels[1:])
    torch.testing.assert_close(flagged.logits(pixels[1:]), logits[1:], rtol=0, atol=1e-6)


# --- The arithmetic: bf16 where the hardware has bf16 units, int8 on other CPUs, float32 when asked -----------------


# One layer as wide as the int8 default asks for (INT8_MIN_HIDDEN): with save_vit_64, a model auto runs in int8.
WIDE_ENOUGH_FOR_INT8 = {"hidden_size": INT8_MIN_HIDDEN, "num_hidden_layers": 1}


def save_vit_64(path: Path, seed: int = 0, **overrides) -> Path:
    """A random tiny ViT (hidden 32, 2 layers; ``overrides`` of its config) at 64 px / patch 8: 65 tokens, enough
    for the int8 default; as wide as it needs too with ``**WIDE_ENOUGH_FOR_INT8``."""
    from transformers import ViTForImageClassification

    torch.manual_seed(seed)
    config = tiny_vit_config(FERPLUS_LABELS, image_size=64, patch_size=8, **overrides)
    ViTForImageClassification(config).save_pretrained(path)
    image_processor_for(64).save_pretrained(path)
    return Path(path)


def mock_bf16_units(monkeypatch, units: list[str]) -> None:
    """Makes this CPU look like one with (``["amx_bf16"]``) or without (``[]``) bf16 units."""
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda *a: list(units))
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: bool(units))


def ferplus_majority_labels(ferplus_dir: Path, names: list[str]) -> torch.Tensor:
    """The FER+ majority class of each face (``fer2013new.csv`` votes, FER+ label order)."""
    votes = {}
    with open(ferplus_dir / "fer2013new.csv", newline="") as f:
        for row in csv.DictReader(f):
            votes[row["Image name"]] = [int(row[name]) for name in FERPLUS_LABELS]
    return torch.tensor([int(np.argmax(votes[n])) for n in names])


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, ferplus_dir, ferplus_faces):
    """A stand-in for a trained model: the 64 px tiny ViT trained 300 steps on 384 real FER+ faces (majority labels).

    A random ViT's logits barely depend on the face (top-2 margins ~0), so a label comparison on it says little;
    after training the logits spread and most faces have a clear top class. Faces 384-511 are held out.
    """
    images, names = ferplus_faces
    labels = ferplus_majority_labels(ferplus_dir, names[:384])
    path = save_vit_64(tmp_path_factory.mktemp("trained_fer"))
    predictor = FERPredictor(path, device="cpu", precision="fp32")
    pixels, model = predictor.preprocess(list(images[:384])), predictor.model.train()
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        idx = torch.randint(0, len(pixels), (64,))
        loss = F.cross_entropy(model(pixel_values=pixels[idx]).logits, labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(path)
    return path


@pytest.mark.parametrize(
    ("device", "asked", "units", "int8_ok", "tokens", "hidden", "expected"),
    [
        ("cpu", "auto", ["amx_bf16"], True, 197, 384, "bf16"),  # Xeon with AMX
        ("cpu", "auto", ["avx512_bf16"], True, 197, 384, "bf16"),  # EPYC with AVX512-BF16
        ("cpu", "auto", [], True, 197, 384, "int8"),  # AVX2-only EPYC: bf16 emulated, float32 slow
        ("cpu", "auto", [], True, INT8_MIN_TOKENS - 1, 384, "fp32"),  # too few tokens for int8 to gain
        ("cpu", "auto", [], True, 65, INT8_MIN_HIDDEN // 2, "fp32"),  # too narrow: the shipped 6 x 192 ViT
        ("cpu", "auto", [], True, 197, None, "int8"),  # width unknown: not a reason for float32
        ("cpu", "auto", [], False, 197, 384, "fp32"),  # torch without torch.ao.quantization
        ("cpu", "fp32", ["amx_bf16"], True, 197, 384, "fp32"),  # forced float32
        ("cpu", "fp32", [], True, 197, 384, "fp32"),
        ("cpu", "int8", ["amx_bf16"], True, 17, 384, "int8"),  # forced int8, whatever the model
        ("cpu", "bf16", [], True, 197, 384, "fp32"),  # bf16 asked for without units: float32, with a warning
        ("cuda", "auto", [], True, 197, 384, "bf16"),
        ("cuda", "fp32", [], True, 197, 384, "fp32"),
        ("mps", "auto", [], True, 197, 384, "fp32"),
    ],
)
def test_the_automatic_precision_follows_the_hardware_and_the_flag_forces_one(
    device, asked, units, int8_ok, tokens, hidden, expected
):
    chosen, why = choose_inference_precision(device, asked, units, int8_ok, tokens, hidden)
    assert chosen == expected
    assert why.startswith({"bf16": "bf16 autocast", "int8": "int8 dynamic quantization", "fp32": "float32"}[expected])


def test_int8_is_refused_off_the_cpu_and_unknown_precisions_are_refused():
    with pytest.raises(ValueError, match="CPU only"):
        choose_inference_precision("cuda", "int8", [])
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_inference_precision("cpu", "fp16", [])


@pytest.mark.parametrize("units", [[], ["amx_bf16"]], ids=["no_bf16_units", "amx"])
def test_the_predictor_runs_int8_linear_layers_on_a_cpu_without_bf16_units_and_bf16_with_them(
    units, tmp_path, monkeypatch
):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    mock_bf16_units(monkeypatch, units)
    predictor = FERPredictor(save_vit_64(tmp_path, **WIDE_ENOUGH_FOR_INT8), device="cpu")

    kinds = (torch.nn.Linear, DynamicInt8Linear)
    linears = {name: type(m) for name, m in predictor.model.named_modules() if isinstance(m, kinds)}
    if units:
        assert predictor.precision == "bf16" and predictor.bf16
        assert "bf16 units: amx_bf16" in predictor.precision_why
        assert set(linears.values()) == {torch.nn.Linear}
    else:
        assert predictor.precision == "int8" and not predictor.bf16
        assert predictor.precision_why.startswith("int8 dynamic quantization of the linear layers on CPU (no bf16")
        assert linears.pop("classifier") is torch.nn.Linear  # the head stays float32
        assert linears and set(linears.values()) == {DynamicInt8Linear}


def test_precision_fp32_forces_float32_on_a_cpu_without_bf16_units(tmp_path, monkeypatch):
    mock_bf16_units(monkeypatch, [])
    predictor = FERPredictor(save_vit_64(tmp_path), device="cpu", precision="fp32")
    assert predictor.precision == "fp32" and predictor.precision_why == "float32 on CPU (--precision fp32)"
    assert not [m for m in predictor.model.modules() if "quantized" in type(m).__module__]


def test_a_model_with_few_tokens_stays_float32_by_default_without_bf16_units(tiny_dir, monkeypatch):
    mock_bf16_units(monkeypatch, [])
    predictor = FERPredictor(tiny_dir, device="cpu")  # 32 px / patch 8: 17 tokens
    assert predictor.precision == "fp32" and "int8 gains nothing at 17 tokens" in predictor.precision_why


def test_the_bf16_flag_is_an_alias_and_contradictions_are_refused(tiny_dir, monkeypatch):
    mock_bf16_units(monkeypatch, ["avx512_bf16"])
    assert FERPredictor(tiny_dir, device="cpu", bf16=True).precision == "bf16"
    with pytest.raises(ValueError, match="contradicts"):
        FERPredictor(tiny_dir, device="cpu", bf16=True, precision="int8")


def test_int8_keeps_the_float32_labels_of_a_trained_stand_in_on_held_out_real_ferplus_faces(
    trained_dir, ferplus_faces
):
    faces = list(ferplus_faces[0][384:512])  # not seen in training
    fp32 = FERPredictor(trained_dir, device="cpu", precision="fp32")
    int8 = FERPredictor(trained_dir, device="cpu", precision="int8", recheck=False)
    pixels = fp32.preprocess(faces)
    reference, quantized = fp32.logits(pixels), int8.logits(pixels)

    top2 = reference.topk(2, dim=1).values
    clear = top2[:, 0] - top2[:, 1] > 0.3  # faces with a clear float32 top class
    assert len(reference.argmax(1).unique()) >= 3, "the stand-in should predict several classes"
    assert clear.float().mean() >= 0.4, "the stand-in should be confident on many faces"
    assert (quantized - reference).abs().max() < 0.25  # logits spread over several units (std ~1.6)
    same = quantized.argmax(1) == reference.argmax(1)
    assert same[clear].all()
    assert same.float().mean() >= 0.95


def test_int8_reruns_its_close_calls_in_float32_and_keeps_every_float32_label(trained_dir, ferplus_faces):
    from modeling.inference.predictor import RECHECK_CALIBRATION_FACES as K

    faces = list(ferplus_faces[0][384:512])  # held out
    fp32 = FERPredictor(trained_dir, device="cpu", precision="fp32")
    plain = FERPredictor(trained_dir, device="cpu", precision="int8", recheck=False)
    int8 = FERPredictor(trained_dir, device="cpu", precision="int8")  # recheck is the default
    assert int8.rechecks and not plain.rechecks and not fp32.rechecks
    pixels = fp32.preprocess(faces)
    reference, alone = fp32.logits(pixels), plain.logits(pixels)
    logits = torch.cat([int8.logits(pixels[i : i + 50]) for i in range(0, len(pixels), 50)])

    assert torch.equal(logits.argmax(1), reference.argmax(1))  # every label float32's
    # the calibration faces ran in float32 and set the threshold: twice their largest int8 error
    torch.testing.assert_close(logits[:K], reference[:K], rtol=0, atol=1e-5)
    errors = (alone[:K] - reference[:K]).abs().amax(1)
    assert int8.recheck_margin == pytest.approx(2 * float(errors.max()), rel=1e-5)
    # past them, faces with an int8 top-2 gap under it ran in float32, the others kept their int8 logits
    top2 = alone[K:].topk(2, dim=1).values
    close = (top2[:, 0] - top2[:, 1]) < int8.recheck_margin
    assert 0 < int(close.sum()) < len(close)  # both kinds occur here: the test sees each branch
    torch.testing.assert_close(logits[K:][close], reference[K:][close], rtol=0, atol=1e-5)
    assert torch.equal(logits[K:][~close], alone[K:][~close])
    assert not torch.allclose(logits[K:][~close], reference[K:][~close], atol=1e-4)  # int8 there, not float32
    assert int8.float32_from is None  # close calls on few faces: int8 stays
    assert int8.recheck_counts == {"faces": len(faces), "calibration": K, "close": int(close.sum()), "after_switch": 0}


@pytest.mark.parametrize("switch", [True, False], ids=["over_the_share", "at_the_share"])
def test_int8_gives_way_to_float32_alone_where_most_faces_are_close_calls(
    trained_dir, ferplus_faces, monkeypatch, switch
):
    from modeling.inference import predictor as predictor_module
    from modeling.inference.fer_predict import recheck_summary

    K, probe = predictor_module.RECHECK_CALIBRATION_FACES, predictor_module.RECHECK_PROBE_FACES
    faces = list(ferplus_faces[0][384:512])  # held out
    fp32 = FERPredictor(trained_dir, device="cpu", precision="fp32")
    pixels = fp32.preprocess(faces)
    reference = fp32.logits(pixels)
    counting = FERPredictor(trained_dir, device="cpu", precision="int8")
    counting.logits(pixels[: K + probe])  # how many of the probe faces are close calls for this model
    n = counting.recheck_counts["close"]
    assert 0 < n < probe and counting.float32_from is None
    # the switch needs more than the share of the probe faces: set the share just under n, or exactly at it
    share = (n - 0.5 if switch else n) / probe

    runs = {}
    for batch in (50, 7):
        int8 = FERPredictor(trained_dir, device="cpu", precision="int8")
        int8.float32_share = share
        int8_calls = []
        forward = int8._logits
        monkeypatch.setattr(
            int8, "_logits", lambda x, calls=int8_calls, forward=forward: calls.append(len(x)) or forward(x)
        )
        runs[batch] = torch.cat([int8.logits(pixels[i : i + batch]) for i in range(0, len(pixels), batch)])
        assert torch.equal(runs[batch].argmax(1), reference.argmax(1))  # float32's labels either way
        if not switch:
            assert int8.float32_from is None and int8.recheck_counts["after_switch"] == 0
            assert sum(int8_calls) == len(faces)
            continue
        assert int8.float32_from == K + probe
        assert int8.recheck_counts == {"faces": len(faces), "calibration": K, "close": n, "after_switch": 128 - 64}
        torch.testing.assert_close(runs[batch][K + probe :], reference[K + probe :], rtol=0, atol=1e-5)
        # int8 ran up to the end of the batch holding face 64, and no further
        assert sum(int8_calls) == -(-(K + probe) // batch) * batch
        summary = recheck_summary(int8)
        assert summary.startswith(f"int8 with float32 re-runs: {K + n + 64} of 128 faces in float32 (8 to set ")
        assert summary.endswith(
            f", {n} with a top-2 logit gap under {int8.recheck_margin:.3g}, 64 from face 65 on in float32 alone: "
            f"int8 was a close call on {n} of the 56 faces after the first 8, over {share:.0%})"
        )
    torch.testing.assert_close(runs[7], runs[50], rtol=0, atol=1e-5)  # the same faces switch whatever the batches


@pytest.mark.parametrize(
    "flags, cap, expected",
    [("avx2 fma", None, "avx2"), ("avx2 avx512f avx512_vnni", None, "vnni"), ("avx2 avx512_vnni", "AVX2", "avx2")],
    ids=["avx2_only", "vnni", "vnni_capped_to_avx2"],
)
def test_int8_gives_way_to_float32_at_a_share_that_depends_on_vnni(tmp_path, monkeypatch, flags, cap, expected):
    from modeling.inference import predictor as predictor_module

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu {flags}\n")
    if cap is None:
        monkeypatch.delenv("FBGEMM_ENABLE_INSTRUCTIONS", raising=False)
    else:
        monkeypatch.setenv("FBGEMM_ENABLE_INSTRUCTIONS", cap)
    assert precision.int8_has_vnni(cpuinfo) == (expected == "vnni")
    monkeypatch.setattr(predictor_module, "int8_has_vnni", lambda: precision.int8_has_vnni(cpuinfo))
    predictor = FERPredictor(save_vit_64(tmp_path / "m", **WIDE_ENOUGH_FOR_INT8), device="cpu", precision="int8")
    assert predictor.float32_share == predictor_module.RECHECK_FLOAT32_SHARES[expected]
    assert predictor_module.RECHECK_FLOAT32_SHARES["avx2"] < predictor_module.RECHECK_FLOAT32_SHARES["vnni"] < 1


def test_int8_scores_of_a_face_do_not_depend_on_the_other_faces_in_its_batch(trained_dir, ferplus_faces):
    faces = list(ferplus_faces[0][:40])
    predictor = FERPredictor(trained_dir, device="cpu", precision="int8")
    together = predictor.predict_proba(faces, batch_size=40)
    # the calibration faces are the first ones the predictor sees, whatever the batches
    # (float32 re-runs go in batches, whose scores differ from one face's in the last bits only)
    again = FERPredictor(trained_dir, device="cpu", precision="int8").predict_proba(faces, batch_size=7)
    np.testing.assert_allclose(again, together, rtol=0, atol=1e-6)
    np.testing.assert_allclose(predictor.predict_proba(faces[20:21], batch_size=1)[0], together[20], rtol=0, atol=1e-6)
    plain = FERPredictor(trained_dir, device="cpu", precision="int8", recheck=False)
    alone = plain.predict_proba(faces, batch_size=40)
    np.testing.assert_array_equal(plain.predict_proba(faces, batch_size=7), alone)
    np.testing.assert_array_equal(plain.predict_proba(faces[5:6], batch_size=1)[0], alone[5])


def test_evaluate_reports_float32_by_default_and_the_int8_accuracy_when_asked(trained_dir, ferplus_mini_dir, tmp_path):
    from modeling.inference.evaluate import EvalArguments
    from modeling.inference.evaluate import main as evaluate

    assert EvalArguments(model="m", dataset_name="ferplus").precision == "fp32"
    assert EvalArguments(model="m", dataset_name="ferplus", bf16=True).precision == "bf16"
    with pytest.raises(ValueError, match="contradicts"):
        EvalArguments(model="m", dataset_name="ferplus", bf16=True, precision="int8")

    common = [str(trained_dir), "--dataset_name", "ferplus", "--data_dir", str(ferplus_mini_dir), "--split", "test"]
    common += ["--num_hardest", "0", "--cache_dir", str(tmp_path / "cache")]
    reports = {}
    runs = {"fp32": ["--precision", "fp32"], "int8": ["--precision", "int8"]}
    runs["int8 alone"] = ["--precision", "int8", "--no_recheck"]
    for name, flags in runs.items():
        assert evaluate([*common, *flags, "--output_dir", str(tmp_path / name)]) == 0
        reports[name] = json.loads((tmp_path / name / "eval_ferplus_test.json").read_text())
    assert reports["fp32"]["precision"] == "fp32" and reports["int8"]["precision"] == "int8"
    assert reports["int8"]["num_examples"] == reports["fp32"]["num_examples"] == 40
    assert abs(reports["int8 alone"]["accuracy"] - reports["fp32"]["accuracy"]) <= 1 / 40
    # with its close calls re-run in float32 (the default), int8 gives float32's labels, hence its confusion matrix
    assert reports["int8"]["confusion_matrix"] == reports["fp32"]["confusion_matrix"]
    assert reports["int8"]["float32_reruns"]["faces"] == 40 and reports["int8"]["float32_reruns"]["calibration"] == 8
    assert "float32_reruns" not in reports["int8 alone"] and "float32_reruns" not in reports["fp32"]
