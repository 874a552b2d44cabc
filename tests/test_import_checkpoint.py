"""Foreign checkpoint import: timm / facebookresearch/mae names -> transformers ViT and ViTMAE.

The references are timm's own ``VisionTransformer`` and ``Block`` (an independent implementation
of the same network), randomly initialised with non-trivial weights so a wrong rename fails.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from transformers import AutoImageProcessor, AutoModelForImageClassification, ViTMAEForPreTraining
from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

from modeling.labels import FERPLUS_LABELS, RAFDB_LABELS
from modeling.models.import_checkpoint import convert_checkpoint, convert_state_dict, load_state_dict, main
from modeling.models.sizes import IMAGENET_MEAN
from modeling.models.timm_names import resize_pos_embed

timm_vit = pytest.importorskip("timm.models.vision_transformer")

TOL = 1e-5
DECODER_WIDTH = 16


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights: every tensor (biases, tokens, position tables, norms) drawn at random."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            is_norm_weight = param.dim() == 1 and "norm" in name and name.endswith("weight")
            param.copy_(1.0 + 0.1 * noise if is_norm_weight else 0.2 * noise)
    return module.eval()


def tiny_timm_vit(num_classes: int = 5, seed: int = 0) -> nn.Module:
    # timm's LayerNorm eps is 1e-6, as in MAE and in modeling.models.sizes.
    model = timm_vit.VisionTransformer(
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        qkv_bias=True,
        class_token=True,
        global_pool="token",
        num_classes=num_classes,
    )
    return randomize(model, seed)


class TimmMAEDecoder(nn.Module):
    """MAE's decoder (models_mae.py) from timm blocks, with MAE's parameter names."""

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, DECODER_WIDTH))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 17, DECODER_WIDTH))
        self.decoder_embed = nn.Linear(32, DECODER_WIDTH)
        self.decoder_blocks = nn.ModuleList(
            [timm_vit.Block(DECODER_WIDTH, 2, mlp_ratio=2.0, qkv_bias=True, norm_layer=norm) for _ in range(2)]
        )
        self.decoder_norm = norm(DECODER_WIDTH)
        self.decoder_pred = nn.Linear(DECODER_WIDTH, 8 * 8 * 3)
        randomize(self, seed)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """``latent [N, 1 + L, D]`` with nothing masked -> ``[N, L, p*p*3]`` pixel predictions."""
        x = self.decoder_embed(latent) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


def mae_sincos(grid: int, dim: int) -> torch.Tensor:
    """``[1, 1 + grid**2, dim]``: transformers' 2-D sin-cos, rotated to MAE's released layout (w first)."""
    table = build_2d_sinusoidal_position_embedding(grid, grid, embed_dim=dim, cls_token=True)
    return torch.cat([table[:, dim // 2 :], table[:, : dim // 2]], dim=1)[None]


def mae_state_dict(sincos: bool = False) -> tuple[dict[str, torch.Tensor], nn.Module, TimmMAEDecoder]:
    encoder, decoder = tiny_timm_vit(num_classes=0), TimmMAEDecoder()
    if sincos:
        with torch.no_grad():
            encoder.pos_embed.copy_(mae_sincos(4, 32))
            decoder.decoder_pos_embed.copy_(mae_sincos(4, DECODER_WIDTH))
    return {**encoder.state_dict(), **decoder.state_dict()}, encoder, decoder


def pixels(size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(7))


def identity_noise(model: ViTMAEForPreTraining, batch: int = 2) -> torch.Tensor:
    length = model.vit.embeddings.patch_embeddings.num_patches
    return torch.arange(length, dtype=torch.float32).expand(batch, length)


@pytest.mark.parametrize("layout", ["model_wrapped_pth", "plain_pth", "safetensors"])
def test_a_random_timm_vit_converts_to_a_classifier_with_the_same_logits(tmp_path: Path, layout: str) -> None:
    timm_model = tiny_timm_vit()
    state = timm_model.state_dict()
    src = tmp_path / ("vit.safetensors" if layout == "safetensors" else "vit.pth")
    if layout == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, src)
    else:
        torch.save({"model": state} if layout == "model_wrapped_pth" else state, src)

    out = convert_checkpoint(src, tmp_path / "hf", num_heads=2)
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    x = pixels()
    with torch.no_grad():
        expected, got = timm_model(x), model(pixel_values=x).logits
    assert expected.abs().max() > 0.1  # the comparison is not between two near-zero outputs
    assert (got - expected).abs().max().item() <= TOL
    assert model.config.layer_norm_eps == 1e-6
    assert list(model.config.id2label.values()) == [f"LABEL_{i}" for i in range(5)]
    assert (out / "model.safetensors").is_file()
    assert list(AutoImageProcessor.from_pretrained(out).image_mean) == pytest.approx(IMAGENET_MEAN)


def test_labels_name_a_matching_head_and_replace_a_mismatched_one() -> None:
    timm_model, x = tiny_timm_vit(num_classes=7), pixels()
    named = convert_state_dict(timm_model.state_dict(), labels="rafdb", num_heads=2)
    assert tuple(named.config.id2label.values()) == RAFDB_LABELS
    with torch.no_grad():
        assert (named(pixel_values=x).logits - timm_model(x)).abs().max().item() <= TOL

    timm_model = tiny_timm_vit(num_classes=5)
    fresh = convert_state_dict(timm_model.state_dict(), labels="happy,sad,angry", num_heads=2)
    assert fresh.config.num_labels == 3 and fresh.classifier.bias.abs().sum() == 0
    with torch.no_grad():
        features = fresh.vit(pixel_values=x).last_hidden_state
        assert (features - timm_model.forward_features(x)).abs().max().item() <= TOL


def test_an_mae_checkpoint_converts_through_the_cli_to_vitmae_with_matching_encoder_and_decoder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    state, encoder, decoder = mae_state_dict()
    src = tmp_path / "mae_pretrain.pth"
    # As MAE's misc.save_model writes it: args is an argparse.Namespace next to the weights.
    torch.save({"model": state, "args": argparse.Namespace(mask_ratio=0.75), "epoch": 3}, src)

    main([str(src), str(tmp_path / "hf"), "--num_heads", "2", "--decoder_num_heads", "2"])
    assert capsys.readouterr().out.startswith(f"Converted {src} -> {tmp_path / 'hf'}: ViTMAEForPreTraining")

    model = ViTMAEForPreTraining.from_pretrained(tmp_path / "hf").eval()
    model.config.mask_ratio = 0.0  # keep every token; identity noise keeps their order (NOTES #2)
    x = pixels()
    with torch.no_grad():
        features = model.vit(pixel_values=x, noise=identity_noise(model)).last_hidden_state
        expected = encoder.forward_features(x)
        assert (features - expected).abs().max().item() <= TOL
        logits = model(pixel_values=x, noise=identity_noise(model)).logits
        assert (logits - decoder(expected)).abs().max().item() <= TOL
    assert list(AutoImageProcessor.from_pretrained(tmp_path / "hf").image_mean) == pytest.approx(IMAGENET_MEAN)


def test_an_mae_checkpoint_converts_to_a_classifier_with_a_new_head_on_request() -> None:
    state, encoder, _ = mae_state_dict()
    model = convert_state_dict(state, labels="ferplus", num_heads=2, decoder_num_heads=2, target="classifier")
    assert tuple(model.config.id2label.values()) == FERPLUS_LABELS
    assert not hasattr(model.config, "decoder_hidden_size")
    x = pixels()
    with torch.no_grad():
        assert (model.vit(pixel_values=x).last_hidden_state - encoder.forward_features(x)).abs().max() <= TOL


def test_resize_pos_embed_keeps_the_cls_row_and_reshapes_the_grid() -> None:
    table = torch.randn(1, 1 + 16, 8)
    assert resize_pos_embed(table, 4) is table
    resized = resize_pos_embed(table, (6, 6))
    assert resized.shape == (1, 1 + 36, 8)
    assert torch.equal(resized[:, :1], table[:, :1])
    constant = torch.cat([table[:, :1], torch.ones(1, 16, 8)], dim=1)
    assert torch.allclose(resize_pos_embed(constant, 6)[:, 1:], torch.ones(1, 36, 8), atol=1e-6)
    assert resize_pos_embed(table[0], 2).shape == (1 + 4, 8)


def test_a_classifier_imported_at_a_larger_size_matches_transformers_own_interpolation() -> None:
    state = tiny_timm_vit().state_dict()
    at_32 = convert_state_dict(state, num_heads=2)
    at_48 = convert_state_dict(state, image_size=48, num_heads=2)
    assert at_48.vit.embeddings.position_embeddings.shape == (1, 1 + 36, 32)
    x = pixels(48)
    with torch.no_grad():
        expected = at_32(pixel_values=x, interpolate_pos_encoding=True).logits
        assert (at_48(pixel_values=x).logits - expected).abs().max().item() <= TOL


def test_mae_sincos_tables_are_regenerated_at_a_new_image_size() -> None:
    state, _, _ = mae_state_dict(sincos=True)
    model = convert_state_dict(state, image_size=48, num_heads=2, decoder_num_heads=2)
    assert torch.allclose(model.vit.embeddings.position_embeddings, mae_sincos(6, 32), atol=1e-6)
    assert torch.allclose(model.decoder.decoder_pos_embed, mae_sincos(6, DECODER_WIDTH), atol=1e-6)
    with torch.no_grad():
        assert model(pixel_values=pixels(48)).logits.shape == (2, 36, 8 * 8 * 3)

    learned, _, _ = mae_state_dict(sincos=False)  # not sin-cos: interpolated bicubically instead
    model = convert_state_dict(learned, image_size=48, num_heads=2, decoder_num_heads=2)
    assert torch.equal(model.vit.embeddings.position_embeddings, resize_pos_embed(learned["pos_embed"], 6))


def test_unknown_keys_are_listed_in_a_clear_error(tmp_path: Path) -> None:
    state = tiny_timm_vit().state_dict()
    state["blocks.0.ls1.gamma"] = torch.ones(32)
    state["reg_token"] = torch.zeros(1, 4, 32)
    src = tmp_path / "layer_scale.pth"
    torch.save({"model": state}, src)
    with pytest.raises(ValueError, match="layer_scale.pth: 2 keys have no counterpart") as err:
        convert_checkpoint(src, tmp_path / "hf", num_heads=2)
    assert "blocks.0.ls1.gamma" in str(err.value) and "reg_token" in str(err.value)


def test_global_pool_checkpoints_are_refused_with_the_reason() -> None:
    state = tiny_timm_vit().state_dict()
    state["fc_norm.weight"], state["fc_norm.bias"] = state.pop("norm.weight"), state.pop("norm.bias")
    with pytest.raises(ValueError, match="global-pool checkpoint .*cannot be represented exactly"):
        convert_state_dict(state, num_heads=2)


def test_missing_heads_width_or_labels_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="heads of a 32-wide ViT; pass num_heads"):
        convert_state_dict(tiny_timm_vit().state_dict())
    with pytest.raises(ValueError, match="no head.*give labels"):
        convert_state_dict(tiny_timm_vit(num_classes=0).state_dict(), num_heads=2)


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: arbitrary code a weights-only load must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickles_with_arbitrary_objects_are_refused_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    src = tmp_path / "evil.pth"
    torch.save({"model": tiny_timm_vit().state_dict(), "extra": _Payload(marker)}, src)
    with pytest.raises(ValueError, match="evil.pth: refused to unpickle with weights_only=True"):
        load_state_dict(src)
    assert not marker.exists()
