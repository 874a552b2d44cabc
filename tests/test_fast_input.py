"""The fast input path: same outputs as the reference eval transform, same augmentation statistics as the
reference ``regular`` recipe and MAE crops, collation of gray/colour/mixed-size batches, clear decode errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from modeling.training.fast_input import (
    NO_BOX,
    FaceBatchTransform,
    PixelCollator,
    decode_face,
    erasing_box,
    fast_transforms,
    random_crop_box,
)
from modeling.training.transforms import build_eval_transform, build_mae_pretrain_transform, build_train_transform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # normalised output = pixel / 255, easy to compare


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def gray(size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def fast_batch(transform: FaceBatchTransform, images: list, mean_std=UNIT) -> torch.Tensor:
    out = transform({"image": images, "label": [0] * len(images)})
    examples = [dict(zip(out, values)) for values in zip(*out.values())]
    return PixelCollator(*mean_std)(examples)["pixel_values"]


def reference_batch(transform, images: list) -> torch.Tensor:
    return torch.stack([transform(image) for image in images])


def test_eval_path_matches_the_reference_eval_transform_from_png_bytes_and_pil():
    face = gray(48)
    expected = build_eval_transform(32, MEAN, STD)(Image.fromarray(face))
    from_bytes = fast_batch(FaceBatchTransform(32), [{"bytes": png_bytes(face), "path": "a.png"}], (MEAN, STD))
    from_pil = fast_batch(FaceBatchTransform(32), [Image.fromarray(face).convert("RGB")], (MEAN, STD))
    assert from_bytes.shape == (1, 3, 32, 32) and from_bytes.dtype == torch.float32
    torch.testing.assert_close(from_bytes[0], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(from_pil[0], expected, atol=1e-5, rtol=0)


def test_grayscale_stays_one_channel_until_the_collator_and_colour_keeps_three():
    assert decode_face(png_bytes(gray(48))).shape == (1, 48, 48)
    colour = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    decoded = decode_face({"bytes": png_bytes(colour), "path": None})
    assert decoded.shape == (3, 20, 30)
    assert torch.equal(decoded, torch.from_numpy(colour).permute(2, 0, 1))  # RGB order, not OpenCV's BGR


def test_a_batch_of_mixed_sizes_and_modes_collates_to_one_normalised_rgb_batch():
    torch.manual_seed(0)
    images = [
        png_bytes(gray(48)),
        png_bytes(gray(100)),
        Image.new("RGB", (64, 40), (10, 200, 30)),
        png_bytes(gray(48)),
    ]
    batch = fast_batch(FaceBatchTransform(32, "regular"), images, (MEAN, STD))
    assert batch.shape == (4, 3, 32, 32) and torch.isfinite(batch).all()


def test_undecodable_bytes_raise_an_error_naming_the_file():
    with pytest.raises(ValueError, match="broken.png"):
        decode_face({"bytes": b"not an image", "path": "broken.png"})


def test_the_flip_option_mirrors_every_face_for_test_time_augmentation():
    face = gray(16)
    plain = fast_batch(FaceBatchTransform(32), [png_bytes(face)])
    mirrored = fast_batch(FaceBatchTransform(32).with_options("label", flip=True), [png_bytes(face)])
    torch.testing.assert_close(mirrored, plain.flip(-1))


def _stats(fast: torch.Tensor, reference: torch.Tensor, fn) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray([fn(x) for x in fast]), np.asarray([fn(x) for x in reference])


N = 400


def _sample_pair(knobs: dict, face: np.ndarray, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    fast = fast_batch(FaceBatchTransform(size, "regular", **knobs), [png_bytes(face)] * N)
    reference_tf = build_train_transform("regular", size, *UNIT, **knobs)
    reference = reference_batch(reference_tf, [Image.fromarray(face)] * N)
    return fast, reference


def test_flip_probability_matches_the_reference_recipe():
    face = np.zeros((16, 16), np.uint8)
    face[:, :4] = 255  # bright left edge: a flip moves it right
    off = {"jitter_p": 0.0, "affine_p": 0.0, "erasing_p": 0.0}
    fast, reference = _sample_pair(off, face)
    flipped_fast, flipped_ref = _stats(fast, reference, lambda x: float(x[0, :, -1].mean() > x[0, :, 0].mean()))
    assert abs(flipped_fast.mean() - 0.5) < 0.08 and abs(flipped_fast.mean() - flipped_ref.mean()) < 0.1


def test_brightness_jitter_factors_match_the_reference_distribution():
    face = np.full((16, 16), 160, np.uint8)
    knobs = {"hflip": 0.0, "affine_p": 0.0, "erasing_p": 0.0}
    fast, reference = _sample_pair(knobs, face)
    factor_fast, factor_ref = _stats(fast, reference, lambda x: float(x.mean()) * 255 / 160)
    for factors in (factor_fast, factor_ref):
        assert factors.min() >= 0.74 and factors.max() <= 1.26
        assert 0.4 < np.mean(np.abs(factors - 1) > 1e-2) < 0.6  # jitter applied with p = 0.5
    assert abs(factor_fast.mean() - factor_ref.mean()) < 0.02
    assert abs(factor_fast.std() - factor_ref.std()) < 0.02


def test_translate_scale_affine_leaves_the_same_share_of_black_border_as_the_reference():
    face = np.full((16, 16), 200, np.uint8)
    knobs = {"hflip": 0.0, "jitter_p": 0.0, "erasing_p": 0.0, "affine_p": 1.0}
    fast, reference = _sample_pair(knobs, face, size=64)
    black_fast, black_ref = _stats(fast, reference, lambda x: float((x[0] < 0.5).float().mean()))
    assert abs(black_fast.mean() - black_ref.mean()) < 0.02, (black_fast.mean(), black_ref.mean())
    assert abs(np.mean(black_fast == 0) - np.mean(black_ref == 0)) < 0.1  # scale > 1 without shift fills all


def test_random_erasing_rate_and_area_match_the_reference():
    face = np.full((16, 16), 200, np.uint8)
    knobs = {"hflip": 0.0, "jitter_p": 0.0, "affine_p": 0.0}
    fast, reference = _sample_pair(knobs, face)
    erased_fast, erased_ref = _stats(fast, reference, lambda x: float((x[0] == 0).float().mean()))
    assert abs(np.mean(erased_fast > 0) - 0.5) < 0.08
    assert abs(np.mean(erased_fast > 0) - np.mean(erased_ref > 0)) < 0.1
    assert abs(erased_fast[erased_fast > 0].mean() - erased_ref[erased_ref > 0].mean()) < 0.03


def test_erasing_and_crop_boxes_stay_inside_the_image_within_their_area_ranges():
    torch.manual_seed(0)
    for _ in range(200):
        top, left, h, w = erasing_box(32, 32, (0.02, 0.33))
        assert (top, left, h, w) == NO_BOX or (top + h <= 32 and left + w <= 32 and 0 < h * w <= 0.4 * 1024)
        top, left, h, w = random_crop_box(48, 48, (0.2, 1.0), (3 / 4, 4 / 3))
        assert top + h <= 48 and left + w <= 48 and h * w >= 0.15 * 48 * 48


def test_mae_pretraining_crops_match_the_reference_in_mean_and_spread():
    face = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1))  # a left-to-right ramp
    torch.manual_seed(0)
    fast = fast_batch(FaceBatchTransform(32, "mae_pretrain", None), [png_bytes(face)] * N)
    reference = reference_batch(build_mae_pretrain_transform(32, *UNIT), [Image.fromarray(face)] * N)
    span_fast, span_ref = _stats(fast, reference, lambda x: float((x[0, 0, -1] - x[0, 0, 0]).abs()))
    assert abs(span_fast.mean() - span_ref.mean()) < 0.05  # crop width relative to the face
    slope_fast, slope_ref = _stats(fast, reference, lambda x: float(x[0, 0, -1] > x[0, 0, 0]))
    assert abs(slope_fast.mean() - 0.5) < 0.08 and abs(slope_fast.mean() - slope_ref.mean()) < 0.1  # flips


def test_only_augmentations_with_a_fast_path_get_one():
    assert fast_transforms("mae", 32) is None
    train, evaluation = fast_transforms("regular", 32, brightness=0.4)
    assert train.cfg.brightness == 0.4 and evaluation.cfg is None
    with pytest.raises(ValueError, match="knobs"):
        FaceBatchTransform(32, "none", brightness=0.4)


def _examples(transform: FaceBatchTransform, images: list) -> list[dict]:
    out = transform({"image": images, "label": list(range(len(images)))})
    return [dict(zip(out, values)) for values in zip(*out.values())]


def test_on_device_collator_hands_over_uint8_that_the_normalizer_turns_into_the_same_batch():
    torch.manual_seed(0)
    transform = FaceBatchTransform(32, "regular", erasing_p=1.0)  # every face gets a box (or NO_BOX)
    examples = _examples(transform, [png_bytes(gray(48, seed)) for seed in range(6)])
    in_loader = PixelCollator(MEAN, STD)(examples)
    handed = PixelCollator(MEAN, STD, on_device=True)(examples)
    assert handed["pixel_values"].dtype == torch.uint8 and handed["pixel_values"].shape == (6, 1, 32, 32)
    assert handed["pixel_erase"].shape == (6, 4) and (handed["pixel_erase"][:, 2] > 0).any()
    assert torch.equal(handed["labels"], in_loader["labels"])
    normalizer = PixelCollator(MEAN, STD, on_device=True).normalizer
    torch.testing.assert_close(normalizer(handed["pixel_values"], handed["pixel_erase"]), in_loader["pixel_values"])
    # The accelerator path (broadcast + one mask) gives the CPU path's numbers.
    broadcast = normalizer.broadcast(handed["pixel_values"], handed["pixel_erase"])
    torch.testing.assert_close(broadcast, in_loader["pixel_values"], atol=1e-6, rtol=0)
    assert (in_loader["pixel_values"] == 0).any()  # the boxes were really erased


def test_a_collator_pickles_for_spawned_workers_without_the_normalizers_device_constants():
    import pickle

    collator = PixelCollator(MEAN, STD, on_device=True)
    collator.normalizer.broadcast(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), None)  # caches the CPU constants
    assert collator.normalizer._constants
    clone = pickle.loads(pickle.dumps(collator))
    assert clone.on_device and clone.normalizer._constants == {}
    assert clone.normalizer.scale_c == collator.normalizer.scale_c


def test_the_normalizer_refuses_float_input_and_misshaped_boxes():
    normalizer = PixelCollator(MEAN, STD).normalizer
    with pytest.raises(ValueError, match="uint8"):
        normalizer(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[2, 4\]"):
        normalizer(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, 4, dtype=torch.int64))


@pytest.mark.parametrize("trainer_name", ["fer", "mae"])
def test_trainers_normalise_uint8_batches_on_the_device_and_refuse_them_without_a_normalizer(trainer_name, tmp_path):
    from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification

    from modeling.training.pretraining import MAETrainer
    from modeling.training.trainer import FERTrainer

    torch.manual_seed(0)
    examples = _examples(FaceBatchTransform(32, "regular", erasing_p=1.0), [png_bytes(gray(48, s)) for s in range(4)])
    if trainer_name == "mae":
        examples = [{k: v for k, v in e.items() if k != "labels"} for e in examples]
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    model = ViTForImageClassification(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                 intermediate_size=32, image_size=32, patch_size=8))  # fmt: skip
    cls = FERTrainer if trainer_name == "fer" else MAETrainer
    trainer = cls(model=model, args=args, data_collator=PixelCollator(MEAN, STD, on_device=True))
    prepared = trainer._prepare_inputs(trainer.data_collator(examples))
    assert "pixel_erase" not in prepared and prepared["pixel_values"].dtype == torch.float32
    torch.testing.assert_close(prepared["pixel_values"], PixelCollator(MEAN, STD)(examples)["pixel_values"])
    assert issubclass(cls, Trainer)
    plain = cls(model=model, args=args, data_collator=lambda rows: rows)
    with pytest.raises(ValueError, match="no `normalizer`"):
        plain._prepare_inputs(PixelCollator(MEAN, STD, on_device=True)(examples))
