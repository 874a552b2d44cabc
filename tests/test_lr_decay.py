"""Layer ids and parameter groups for layer-wise lr decay, on a tiny HF ViT and its peft-LoRA wrapper."""

from __future__ import annotations

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification, ViTMAEConfig, ViTMAEForPreTraining

from modeling.training.lr_decay import layer_id_for, no_decay_param_groups, param_groups

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32, "patch_size": 8}  # fmt: skip


def tiny_vit() -> ViTForImageClassification:
    torch.manual_seed(0)
    return ViTForImageClassification(ViTConfig(**TINY, num_labels=3))


@pytest.mark.parametrize(
    ("name", "layer_id"),
    [
        ("vit.embeddings.cls_token", 0),
        ("vit.embeddings.position_embeddings", 0),
        ("vit.embeddings.patch_embeddings.projection.weight", 0),
        ("vit.layers.0.attention.q_proj.weight", 1),
        ("vit.layers.1.mlp.fc2.bias", 2),
        ("vit.encoder.layer.1.output.dense.weight", 2),  # transformers 4.x names
        ("blocks.0.attn.qkv.weight", 1),  # timm / MAE names
        ("pos_embed", 0),
        ("vit.layernorm.weight", 3),
        ("classifier.weight", 3),
        ("base_model.model.vit.layers.1.attention.v_proj.lora_A.default.weight", 2),  # peft prefixes
        ("base_model.model.classifier.modules_to_save.default.bias", 3),
    ],
)
def test_layer_id_for_maps_embeddings_blocks_and_head(name, layer_id):
    assert layer_id_for(name, num_layers=2) == layer_id


def test_layer_id_for_rejects_a_block_beyond_the_depth():
    with pytest.raises(ValueError, match="block 5"):
        layer_id_for("vit.layers.5.mlp.fc1.weight", num_layers=2)


def test_each_group_lr_is_base_lr_times_decay_to_the_depth_minus_layer_id():
    model = tiny_vit()
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.65, base_lr=1e-3)
    for group in groups:
        assert group["lr"] == pytest.approx(1e-3 * 0.65 ** (2 + 1 - group["layer_id"]), rel=1e-12)
        for name in group["param_names"]:
            assert layer_id_for(name, 2) == group["layer_id"]
    by_name = {n: g for g in groups for n in g["param_names"]}
    assert by_name["vit.embeddings.patch_embeddings.projection.weight"]["lr"] == pytest.approx(1e-3 * 0.65**3)
    assert by_name["vit.layers.0.mlp.fc1.weight"]["lr"] == pytest.approx(1e-3 * 0.65**2)
    assert by_name["vit.layers.1.attention.q_proj.weight"]["lr"] == pytest.approx(1e-3 * 0.65)
    assert by_name["classifier.weight"]["lr"] == pytest.approx(1e-3)


def test_every_trainable_parameter_is_in_exactly_one_group():
    model = tiny_vit()
    model.vit.embeddings.patch_embeddings.projection.bias.requires_grad_(False)
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.75, base_lr=1e-3)
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable) and len(set(grouped)) == len(grouped)
    torch.optim.AdamW(groups, lr=1e-3)  # torch accepts the extra keys


def test_norms_biases_and_tokens_get_no_weight_decay_and_matrices_do():
    groups = param_groups(tiny_vit(), weight_decay=0.05, layer_decay=0.65, base_lr=1e-3)
    decay = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    for name, wd in decay.items():
        skip = name.endswith(".bias") or "layernorm" in name or "cls_token" in name or "position_embeddings" in name
        assert wd == (0.0 if skip else 0.05), name
    assert decay["vit.layers.0.attention.q_proj.weight"] == 0.05


def test_a_peft_lora_model_gets_groups_for_its_trainable_adapters_and_head_only():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_vit(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["classifier"])
    )
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.65, base_lr=1e-3)
    names = [n for g in groups for n in g["param_names"]]
    assert sorted(names) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert all("lora_" in n or "classifier" in n for n in names)
    lrs = {g["layer_id"]: g["lr"] for g in groups}
    assert lrs == pytest.approx({1: 1e-3 * 0.65**2, 2: 1e-3 * 0.65, 3: 1e-3})


def test_no_decay_param_groups_split_the_mae_parameters_without_layer_decay():
    torch.manual_seed(0)
    mae = ViTMAEForPreTraining(
        ViTMAEConfig(**TINY, decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                     decoder_intermediate_size=32)
    )  # fmt: skip
    decay, no_decay = no_decay_param_groups(mae, weight_decay=0.05)
    assert "lr" not in decay and decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert "vit.embeddings.cls_token" in no_decay["param_names"]
    assert all(p.ndim >= 2 for p in decay["params"])
    assert all(n.endswith("bias") or "norm" in n or "token" in n for n in no_decay["param_names"])
    trainable = sorted(n for n, p in mae.named_parameters() if p.requires_grad)
    assert sorted(decay["param_names"] + no_decay["param_names"]) == trainable
