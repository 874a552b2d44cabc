"""Distillation from a convolutional teacher: the teacher's save/load, the loss, FERTrainer's use of it, and the
teacher's training command on the real FER+ mini folder."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from modeling.models.file_modes import output_file_mode
from modeling.models.teacher import TEACHER_CONFIG, TEACHER_WEIGHTS, FaceResNet, load_teacher, save_teacher
from modeling.training.losses import distillation_loss, soft_target_cross_entropy
from modeling.training.trainer import FERTrainer
from tests.test_trainer import RandomImages, make_args, tiny_vit

LABELS = ["a", "b", "c"]


def test_the_face_resnet_keeps_a_24x24_first_stage_on_48px_faces():
    model = FaceResNet(8).eval()
    seen = {}
    model.net.layer1.register_forward_hook(lambda m, i, o: seen.update(layer1=o.shape))
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 8)
    assert seen["layer1"] == (2, 64, 24, 24)  # the ImageNet stem (7x7/2 + max pool) would leave 12x12
    with pytest.raises(ValueError, match="architecture"):
        FaceResNet(8, architecture="vgg13")


def test_a_saved_teacher_reloads_to_the_same_logits_and_a_broken_folder_is_named(tmp_path):
    torch.manual_seed(0)
    model = FaceResNet(3).eval()
    x = torch.randn(4, 3, 48, 48)
    save_teacher(model, tmp_path / "t", LABELS, 48, {"selected_epoch": 7})
    loaded, config = load_teacher(tmp_path / "t")
    assert not loaded.training
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert config == {"architecture": "resnet18", "labels": LABELS, "image_size": 48, "selected_epoch": 7}
    for name in (TEACHER_WEIGHTS, TEACHER_CONFIG):  # the weights too: safetensors alone would write them 0600
        assert (tmp_path / "t" / name).stat().st_mode & 0o777 == output_file_mode(), name
    (tmp_path / "t" / TEACHER_WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match=TEACHER_WEIGHTS):
        load_teacher(tmp_path / "t")
    # Weights of a 3-class teacher under a config that claims 2 classes: strict loading refuses them.
    save_teacher(model, tmp_path / "u", LABELS, 48)
    (tmp_path / "u" / TEACHER_CONFIG).write_text(json.dumps({"architecture": "resnet18", "labels": ["a", "b"]}))
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_teacher(tmp_path / "u")
    with pytest.raises(ValueError, match="2 labels"):
        save_teacher(model, tmp_path / "v", ["a", "b"], 48)


def test_distillation_loss_ends_are_the_plain_loss_and_the_teachers_loss():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 3), torch.randn(6, 3)
    votes = torch.softmax(torch.randn(6, 3), -1)
    ids = torch.tensor([0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(
        distillation_loss(student, votes, teacher, 0.0), soft_target_cross_entropy(student, votes)
    )
    torch.testing.assert_close(
        distillation_loss(student, ids, teacher, 0.0, label_smoothing=0.1),
        F.cross_entropy(student, ids, label_smoothing=0.1),
    )
    # Soft, T = 1: KL(teacher || student), i.e. cross-entropy to the teacher's softmax minus its entropy.
    p_teacher = torch.softmax(teacher, -1)
    entropy = -(p_teacher * p_teacher.log()).sum(-1).mean()
    torch.testing.assert_close(
        distillation_loss(student, votes, teacher, 1.0), soft_target_cross_entropy(student, p_teacher) - entropy
    )
    # T^2 * KL at temperature T, computed by hand.
    t = 3.0
    pt, ls = torch.softmax(teacher / t, -1), torch.log_softmax(student / t, -1)
    by_hand = (pt * (pt.log() - ls)).sum(-1).mean() * t * t
    torch.testing.assert_close(distillation_loss(student, votes, teacher, 1.0, temperature=t), by_hand)
    # Hard (DeiT): cross-entropy with the teacher's argmax; halfway is the average of the two terms.
    hard = F.cross_entropy(student, teacher.argmax(-1))
    torch.testing.assert_close(distillation_loss(student, votes, teacher, 1.0, hard=True), hard)
    half = 0.5 * soft_target_cross_entropy(student, votes) + 0.5 * hard
    torch.testing.assert_close(distillation_loss(student, votes, teacher, 0.5, hard=True), half)


def test_distillation_loss_sends_no_gradient_to_the_teacher_and_refuses_bad_settings():
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    distillation_loss(student, torch.tensor([0, 1, 2, 0]), teacher, 0.5, temperature=2.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(student, torch.tensor([0, 1, 2, 0]), teacher, 1.5)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(student, torch.tensor([0, 1, 2, 0]), teacher, 0.5, temperature=0)
    with pytest.raises(ValueError, match="teacher logits"):
        distillation_loss(student, torch.tensor([0, 1, 2, 0]), torch.randn(4, 5), 0.5)


class ConvTeacher(torch.nn.Module):
    """A small frozen-able teacher for 32 px test images: one conv with batch norm, pooled, then linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.norm = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, pixel_values):
        return self.head(self.norm(self.conv(pixel_values)).mean((2, 3)))


def test_fertrainer_distils_in_training_only_and_leaves_the_teacher_untouched(tmp_path):
    dataset = RandomImages(n=8, soft=True)
    teacher = ConvTeacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = FERTrainer(
        model=tiny_vit(),
        args=make_args(tmp_path, max_steps=3),
        train_dataset=dataset,
        teacher=teacher,
        distillation_alpha=0.7,
        distillation_temperature=2.0,
    )
    assert not trainer.teacher.training and not any(p.requires_grad for p in trainer.teacher.parameters())
    batch = {"pixel_values": dataset.images, "labels": dataset.soft}
    model = trainer.model
    with torch.no_grad():
        logits = model.eval()(pixel_values=dataset.images).logits
        teacher_logits = teacher(dataset.images)
        torch.testing.assert_close(trainer.compute_loss(model, batch), soft_target_cross_entropy(logits, dataset.soft))
        model.train()  # the tiny ViT has no dropout: train() changes only the loss
        distilled = trainer.compute_loss(model, batch)
    expected = distillation_loss(logits, dataset.soft, teacher_logits, 0.7, temperature=2.0)
    torch.testing.assert_close(distilled, expected)
    assert not torch.isclose(distilled, soft_target_cross_entropy(logits, dataset.soft))
    assert torch.isfinite(torch.tensor(trainer.train().training_loss))
    for key, value in teacher.state_dict().items():  # batch-norm statistics included: the teacher stays in eval
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_the_teacher_command_trains_selects_on_validation_and_resumes(ferplus_mini_dir, tmp_path):
    from modeling.training.teacher import main

    common = ["--data_dir", str(ferplus_mini_dir), "--cache_dir", str(tmp_path / "cache"), "--batch_size", "8"]
    common += ["--output_dir", str(tmp_path / "teacher"), "--num_workers", "0", "--max_steps_per_epoch", "2"]
    first = main([*common, "--epochs", "1"])
    history = json.loads((tmp_path / "teacher" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1] and first["epoch"] == 1 and first["selected_epoch"] == 1
    assert 0.0 <= history[0]["eval_accuracy"] <= 1.0 and "eval_accuracy_flip" in history[0]
    # Rerunning with more epochs resumes after epoch 1: its row is kept as it was, one epoch is added.
    second = main([*common, "--epochs", "2"])
    resumed = json.loads((tmp_path / "teacher" / "history.json").read_text())
    assert resumed[0] == history[0] and [row["epoch"] for row in resumed] == [1, 2]
    teacher, config = load_teacher(tmp_path / "teacher")
    assert config["labels"][:2] == ["neutral", "happiness"] and config["image_size"] == 48
    best = max(row["eval_accuracy"] for row in resumed)
    assert second["best_eval_accuracy"] == pytest.approx(best)
    assert config["eval"]["accuracy"] == pytest.approx(best)
    assert teacher(torch.zeros(1, 3, 48, 48)).shape == (1, len(config["labels"]))


def test_the_teacher_command_names_a_missing_data_folder(tmp_path, capsys):
    from modeling.cli import run_main
    from modeling.training.teacher import main

    status = run_main(lambda: main(["--data_dir", str(tmp_path / "nope"), "--output_dir", str(tmp_path)]), "teacher")
    assert status == 2
    assert f"--data_dir {tmp_path / 'nope'}: not a directory" in capsys.readouterr().err
