"""Fine-tuning a ViT at another input size (modeling.models.resolution): the resized classifier as plain
transformers saves and loads it, load_classifier's --image_size, and the teacher fed a
student's larger batch at its own size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import ViTForImageClassification, ViTMAEForPreTraining

from modeling.models.resolution import resize_classifier
from modeling.models.teacher import FaceResNet, load_teacher, save_teacher
from modeling.training.finetuning import load_classifier
from tests.tiny import tiny_mae_config, tiny_vit_config

LABELS = ["a", "b", "c"]
KEY = "vit.embeddings.position_embeddings"


def test_a_resized_classifier_keeps_every_other_weight_and_round_trips_through_plain_transformers(tmp_path):
    torch.manual_seed(0)
    model = ViTForImageClassification(tiny_vit_config(LABELS, image_size=32, patch_size=8)).eval()
    model.vit.embeddings.patch_embeddings.requires_grad_(False)
    resized = resize_classifier(model, 48)
    assert resized.config.image_size == 48 and model.config.image_size == 32  # the source is left as it was
    assert resized.vit.embeddings.position_embeddings.shape == (1, 1 + 6 * 6, model.config.hidden_size)
    before, after = model.state_dict(), resized.state_dict()
    assert before.keys() == after.keys()
    for name in before:
        if name != KEY:
            torch.testing.assert_close(after[name], before[name], rtol=0, atol=0, msg=name)
    assert not resized.training
    assert not resized.vit.embeddings.patch_embeddings.projection.weight.requires_grad
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        logits = resized(pixel_values=x).logits
    with pytest.raises(ValueError):  # the source still wants 32 px input
        model(pixel_values=x)
    with torch.no_grad():  # what transformers computes when asked to stretch the 32 px table at run time
        stretched = model(pixel_values=x, interpolate_pos_encoding=True).logits
    assert (logits - stretched).abs().max().item() < 1e-4
    resized.save_pretrained(tmp_path / "m")
    loaded = ViTForImageClassification.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.image_size == 48
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=x).logits, logits, rtol=0, atol=0)
    assert resize_classifier(model, 32) is model
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        resize_classifier(model, 44)


def test_load_classifier_fine_tunes_a_saved_classifier_or_an_mae_at_another_size(tmp_path):
    torch.manual_seed(0)
    ViTForImageClassification(tiny_vit_config(LABELS)).save_pretrained(tmp_path / "vit")
    model = load_classifier(str(tmp_path / "vit"), LABELS, image_size=48)
    assert model.config.image_size == 48 and model.config.num_labels == 3
    assert model(pixel_values=torch.randn(1, 3, 48, 48)).logits.shape == (1, 3)
    ViTMAEForPreTraining(tiny_mae_config()).save_pretrained(tmp_path / "mae")
    from_mae = load_classifier(str(tmp_path / "mae"), LABELS, image_size=64)
    assert from_mae.vit.embeddings.position_embeddings.shape[1] == 1 + 8 * 8
    assert from_mae.vit.embeddings.position_embeddings.requires_grad  # the MAE's table is learned from here on
    with pytest.raises(ValueError, match=r"--image_size 44 is not a multiple of its patch size 8"):
        load_classifier(str(tmp_path / "vit"), LABELS, image_size=44)


def test_the_teacher_reads_a_larger_batch_at_the_size_it_was_trained_at(tmp_path):
    torch.manual_seed(0)
    save_teacher(FaceResNet(3), tmp_path / "t", LABELS, 48)
    teacher, _ = load_teacher(tmp_path / "t")
    assert teacher.image_size == 48
    faces = torch.randn(2, 3, 48, 48)
    big = F.interpolate(faces, size=(72, 72), mode="bicubic", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(teacher(faces), teacher.net(faces), rtol=0, atol=0)  # its own size: as it is
        shrunk = F.interpolate(big, size=(48, 48), mode="bilinear", align_corners=False, antialias=True)
        torch.testing.assert_close(teacher(big), teacher.net(shrunk), rtol=0, atol=0)
        # Read at its size the teacher sees nearly the faces it was given; fed the 72 px batch as it is, it would
        # see them at another scale (its convolutions have a fixed reach in pixels).
        near = (teacher(big) - teacher(faces)).abs().mean()
        as_is = (teacher.net(big) - teacher(faces)).abs().mean()
        assert near < as_is
