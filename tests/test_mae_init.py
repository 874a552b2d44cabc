import numpy as np
import torch
from transformers import ViTMAEForPreTraining

from modeling.models.mae import build_mae_for_pretraining, identity_noise, position_tables_are_zero
from tests.tiny import tiny_mae_config


def reference_sincos(grid: int, dim: int) -> np.ndarray:
    """Written from the MAE paper's description, loop by loop: per patch (row i, column j),
    [sin(j w_k) | cos(j w_k) | sin(i w_k) | cos(i w_k)] with w_k = 1 / 10000^(k / (dim / 4)); cls row zero."""
    quarter = dim // 4
    out = np.zeros((grid * grid + 1, dim))
    for i in range(grid):
        for j in range(grid):
            row = out[1 + i * grid + j]
            for k in range(quarter):
                w = 1.0 / 10000 ** (k / quarter)
                row[k] = np.sin(j * w)
                row[quarter + k] = np.cos(j * w)
                row[2 * quarter + k] = np.sin(i * w)
                row[3 * quarter + k] = np.cos(i * w)
    return out


def test_plain_transformers_leaves_the_position_tables_zero():
    # The trap this module exists for (NOTES #1); if transformers fixes it this test tells us.
    model = ViTMAEForPreTraining(tiny_mae_config())
    assert position_tables_are_zero(model)


def test_from_scratch_mae_has_the_2d_sincos_tables_in_encoder_and_decoder():
    config = tiny_mae_config()
    model = build_mae_for_pretraining(config)
    grid = config.image_size // config.patch_size
    enc = model.vit.embeddings.position_embeddings[0].detach().numpy()
    dec = model.decoder.decoder_pos_embed[0].detach().numpy()
    np.testing.assert_allclose(enc, reference_sincos(grid, config.hidden_size), atol=1e-6)
    np.testing.assert_allclose(dec, reference_sincos(grid, config.decoder_hidden_size), atol=1e-6)
    assert np.abs(enc[1:]).sum() > 0 and np.abs(dec[1:]).sum() > 0
    assert not position_tables_are_zero(model)


def test_from_scratch_mae_tables_match_the_layout_transformers_uses_for_released_weights():
    # transformers' own builder (used when its init does run) rotates the halves to MAE's layout.
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

    config = tiny_mae_config()
    model = build_mae_for_pretraining(config)
    table = build_2d_sinusoidal_position_embedding(height=4, width=4, embed_dim=32, cls_token=True)
    table = torch.cat([table[..., 16:], table[..., :16]], dim=-1)
    torch.testing.assert_close(model.vit.embeddings.position_embeddings[0], table.float(), atol=1e-6, rtol=0)


def test_from_scratch_mae_tokens_are_random_and_tables_frozen():
    model = build_mae_for_pretraining(tiny_mae_config())
    assert model.vit.embeddings.cls_token.abs().sum() > 0
    assert model.decoder.mask_token.abs().sum() > 0
    assert not model.vit.embeddings.position_embeddings.requires_grad
    assert not model.decoder.decoder_pos_embed.requires_grad


def test_sincos_tables_survive_save_and_reload(tmp_path):
    model = build_mae_for_pretraining(tiny_mae_config())
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    again = ViTMAEForPreTraining.from_pretrained(tmp_path)
    torch.testing.assert_close(again.vit.embeddings.position_embeddings, model.vit.embeddings.position_embeddings)
    torch.testing.assert_close(again.decoder.decoder_pos_embed, model.decoder.decoder_pos_embed)


def test_identity_noise_keeps_token_order_without_masking():
    config = tiny_mae_config(mask_ratio=0.0)
    model = build_mae_for_pretraining(config).eval()
    x = torch.randn(2, 3, 32, 32)
    out = model.vit(pixel_values=x, noise=identity_noise(2, 16))
    assert torch.equal(out.ids_restore, torch.arange(16).expand(2, 16))
    assert out.mask.sum() == 0
