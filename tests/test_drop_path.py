"""Stochastic depth hooks on HF ViT: active in train(), absent in eval(), invisible to checkpoints."""

from __future__ import annotations

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from modeling.models.drop_path import disable_drop_path, drop_path_rates, enable_drop_path

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32, "patch_size": 8}  # fmt: skip


def tiny_vit(seed: int = 0) -> ViTForImageClassification:
    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(**TINY, num_labels=3))


def pixels(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_rates_rise_linearly_from_zero_to_drop_path():
    assert drop_path_rates(0.1, 3) == pytest.approx([0.0, 0.05, 0.1])
    assert drop_path_rates(0.2, 1) == [0.2]
    with pytest.raises(ValueError, match="drop_path"):
        drop_path_rates(1.0, 2)


def test_in_eval_mode_the_output_equals_the_unpatched_model_exactly():
    plain, patched = tiny_vit(), enable_drop_path(tiny_vit(), 0.5)
    plain.eval(), patched.eval()
    with torch.no_grad():
        assert torch.equal(plain(pixels()).logits, patched(pixels()).logits)


def test_in_train_mode_forwards_with_different_seeds_differ_and_the_same_seed_repeats():
    model = enable_drop_path(tiny_vit(), 0.5).train()
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(pixels()).logits
        torch.manual_seed(2)
        b = model(pixels()).logits
        torch.manual_seed(1)
        c = model(pixels()).logits
    assert not torch.allclose(a, b)
    assert torch.equal(a, c)


def test_a_high_drop_rate_drops_whole_samples_of_the_last_block():
    model = enable_drop_path(tiny_vit(), 0.9).train()  # last block drops 90% of samples per branch
    captured = []
    model.vit.layers[1].mlp.register_forward_hook(lambda m, a, out: captured.append(out.detach()))
    torch.manual_seed(0)
    with torch.no_grad():
        model(pixels(32))
    per_sample = captured[0].abs().flatten(1).amax(dim=1)
    dropped = per_sample == 0
    assert 0 < int(dropped.sum()) < 32  # per-sample: some samples' branch zeroed entirely, the rest kept
    model.eval()
    captured.clear()
    with torch.no_grad():
        model(pixels(32))
    assert (captured[0].abs().flatten(1).amax(dim=1) > 0).all()  # nothing dropped in eval


def test_the_train_mode_output_changes_against_the_plain_model():
    plain, patched = tiny_vit().train(), enable_drop_path(tiny_vit(), 0.9).train()
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.allclose(plain(pixels()).logits, patched(pixels()).logits)


def test_disable_restores_the_plain_model_in_train_mode():
    plain, patched = tiny_vit().train(), disable_drop_path(enable_drop_path(tiny_vit(), 0.5)).train()
    with torch.no_grad():
        assert torch.equal(plain(pixels()).logits, patched(pixels()).logits)
    assert not any(layer.mlp._forward_hooks for layer in patched.vit.layers)


def test_gradients_flow_through_the_kept_samples():
    model = enable_drop_path(tiny_vit(), 0.3).train()
    torch.manual_seed(0)
    model(pixels(), labels=torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])).loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_state_dict_keys_equal_a_plain_model_and_save_pretrained_round_trips(tmp_path):
    patched = enable_drop_path(tiny_vit(), 0.1)
    assert list(patched.state_dict()) == list(tiny_vit().state_dict())
    patched.save_pretrained(tmp_path)
    reloaded, info = ViTForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"]
    patched.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.equal(patched(pixels()).logits, reloaded(pixels()).logits)
    assert not any(layer.mlp._forward_hooks for layer in reloaded.vit.layers)  # a plain model comes back


def test_enable_on_a_model_without_vit_blocks_raises_a_clear_error():
    with pytest.raises(ValueError, match="no ViT blocks"):
        enable_drop_path(torch.nn.Linear(2, 2), 0.1)
