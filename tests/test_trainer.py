"""FERTrainer: weighted sampler, layer-decayed AdamW and soft-target loss, on a tiny ViT and random tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import TrainingArguments, ViTConfig, ViTForImageClassification

from modeling.models.drop_path import enable_drop_path
from modeling.training.losses import soft_target_cross_entropy
from modeling.training.sampling import EpochSeededWeightedSampler, class_weights
from modeling.training.trainer import FERTrainer
from modeling.training.transforms import MixupCutmix

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32, "patch_size": 8}  # fmt: skip


class RandomImages(torch.utils.data.Dataset):
    """Learnable toy task: the class is encoded in the mean brightness of the image."""

    def __init__(self, n: int = 32, num_classes: int = 3, soft: bool = False):
        g = torch.Generator().manual_seed(0)
        self.labels = torch.randint(0, num_classes, (n,), generator=g)
        self.images = torch.randn(n, 3, 32, 32, generator=g) * 0.1 + self.labels.view(-1, 1, 1, 1).float()
        self.soft = torch.softmax(torch.randn(n, num_classes, generator=g), dim=1) if soft else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.images[i], "labels": self.soft[i] if self.soft is not None else self.labels[i]}


def tiny_vit() -> ViTForImageClassification:
    torch.manual_seed(0)
    return ViTForImageClassification(ViTConfig(**TINY, num_labels=3))


def make_args(tmp_path, **overrides) -> TrainingArguments:
    kwargs = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-3,
        "weight_decay": 0.05,
        "adam_beta2": 0.999,
        "num_train_epochs": 3,
        "use_cpu": True,
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "seed": 0,
    }
    return TrainingArguments(**{**kwargs, **overrides})


def test_training_a_tiny_vit_lowers_the_loss_with_layer_decayed_groups(tmp_path):
    dataset = RandomImages()
    model = enable_drop_path(tiny_vit(), 0.1)
    trainer = FERTrainer(
        model=model,
        args=make_args(tmp_path, lr_scheduler_type="constant"),
        train_dataset=dataset,
        sample_weights=class_weights(dataset.labels.numpy(), "inverse"),
        layer_decay=0.65,
        label_smoothing=0.1,
    )
    result = trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert result.training_loss == pytest.approx(sum(losses) / len(losses), rel=0.05)
    groups = trainer.optimizer.param_groups
    assert {g["layer_id"] for g in groups} == {0, 1, 2, 3}
    for group in groups:  # constant schedule: the lrs stay base lr x decay^(depth - id)
        assert group["lr"] == pytest.approx(1e-3 * 0.65 ** (3 - group["layer_id"]))
        assert group["betas"] == (0.9, 0.999)
        assert group["fused"] is True  # the Trainer's default optim, adamw_torch_fused, as a plain Trainer builds it
    assert isinstance(trainer.get_train_dataloader().batch_sampler.sampler, EpochSeededWeightedSampler)


def test_the_optim_argument_chooses_the_adamw_implementation_and_other_optimizers_are_refused(tmp_path):
    plain = FERTrainer(model=tiny_vit(), args=make_args(tmp_path, optim="adamw_torch"), layer_decay=0.65)
    plain.create_optimizer()
    assert all(not g["fused"] for g in plain.optimizer.param_groups)
    sgd = FERTrainer(model=tiny_vit(), args=make_args(tmp_path, optim="sgd"), layer_decay=0.65)
    with pytest.raises(ValueError, match="optim must be adamw_torch_fused"):
        sgd.create_optimizer()


def test_without_sample_weights_the_default_sampler_is_used(tmp_path):
    trainer = FERTrainer(model=tiny_vit(), args=make_args(tmp_path), train_dataset=RandomImages())
    sampler = trainer._get_train_sampler()
    assert not isinstance(sampler, EpochSeededWeightedSampler)
    with pytest.raises(ValueError, match="sample_weights has 3 entries"):
        FERTrainer(
            model=tiny_vit(), args=make_args(tmp_path), train_dataset=RandomImages(), sample_weights=[1, 1, 1]
        )._get_train_sampler()


def test_soft_labels_use_soft_target_cross_entropy_not_bce(tmp_path):
    dataset = RandomImages(n=8, soft=True)
    trainer = FERTrainer(model=tiny_vit(), args=make_args(tmp_path, max_steps=2), train_dataset=dataset)
    model = trainer.model.eval()
    batch = {"pixel_values": dataset.images, "labels": dataset.soft}
    with torch.no_grad():
        loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
        logits = model(pixel_values=dataset.images).logits
    torch.testing.assert_close(loss, soft_target_cross_entropy(logits, dataset.soft))
    assert not torch.isclose(loss, F.binary_cross_entropy_with_logits(logits, dataset.soft))
    torch.testing.assert_close(outputs.logits, logits)
    assert torch.isfinite(torch.tensor(trainer.train().training_loss))


def test_label_smoothing_applies_in_training_and_the_eval_loss_is_plain_cross_entropy(tmp_path):
    dataset = RandomImages(n=8)
    trainer = FERTrainer(model=tiny_vit(), args=make_args(tmp_path), label_smoothing=0.2)
    model = trainer.model
    batch = {"pixel_values": dataset.images, "labels": dataset.labels}
    with torch.no_grad():
        logits = model.eval()(pixel_values=dataset.images).logits
        torch.testing.assert_close(trainer.compute_loss(model, batch), F.cross_entropy(logits, dataset.labels))
        model.train()  # the tiny ViT has no dropout, so train() changes only the loss
        smoothed = trainer.compute_loss(model, batch)
    torch.testing.assert_close(smoothed, F.cross_entropy(logits, dataset.labels, label_smoothing=0.2))
    metrics = trainer.evaluate(eval_dataset=dataset)
    assert metrics["eval_loss"] == pytest.approx(F.cross_entropy(logits, dataset.labels).item(), rel=1e-5)


def test_mixup_inside_compute_loss_mixes_training_batches_only(tmp_path):
    dataset = RandomImages(n=8)
    mixup = MixupCutmix(num_classes=3, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, seed=0)
    trainer = FERTrainer(model=tiny_vit(), args=make_args(tmp_path, max_steps=3), train_dataset=dataset, mixup=mixup)
    batch = {"pixel_values": dataset.images, "labels": dataset.labels}
    model = trainer.model.eval()
    with torch.no_grad():
        logits = model(pixel_values=dataset.images).logits
        assert trainer.compute_loss(model, batch) == pytest.approx(F.cross_entropy(logits, dataset.labels).item())
        assert mixup.last_mode == "none"  # untouched in eval
        model.train()
        loss = trainer.compute_loss(model, batch)
    assert mixup.last_mode == "mixup"
    reference = MixupCutmix(num_classes=3, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, seed=0)
    mixed, targets = reference(dataset.images, dataset.labels)
    with torch.no_grad():
        expected = soft_target_cross_entropy(model(pixel_values=mixed).logits, targets)
    torch.testing.assert_close(loss, expected)
    assert torch.isfinite(torch.tensor(trainer.train().training_loss))
