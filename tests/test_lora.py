"""LoRA fine-tuning: a small trainable share on a base-sized ViT, and a merge that yields a plain checkpoint."""

import torch
from transformers import AutoModelForImageClassification, ViTForImageClassification

from modeling.labels import RAFDB_LABELS
from modeling.models.sizes import vit_config
from modeling.training.finetuning import LORA_TARGETS, add_lora, trainable_share


def test_lora_on_a_base_sized_vit_trains_under_five_percent_and_merges_to_equal_logits(tmp_path):
    torch.manual_seed(0)
    model = ViTForImageClassification(vit_config("base", image_size=32, patch_size=16, labels=RAFDB_LABELS))
    assert sum(p.numel() for p in model.parameters()) > 80e6  # really base-sized
    peft_model = add_lora(model, r=8, alpha=16, dropout=0.0)
    share = trainable_share(peft_model)
    assert 0 < share < 0.05
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("classifier" in n for n in trainable)  # head trained in full
    assert all(("lora_" in n and any(t in n for t in LORA_TARGETS)) or "classifier" in n for n in trainable)

    # Pretend training moved the adapters: B starts at zero, which would make the merge trivially exact.
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02)
    x = torch.randn(2, 3, 32, 32)
    peft_model.eval()
    with torch.no_grad():
        before = peft_model(pixel_values=x).logits
    merged = peft_model.merge_and_unload()
    assert type(merged) is ViTForImageClassification
    merged.save_pretrained(tmp_path)
    reloaded, info = AutoModelForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        after = reloaded.eval()(pixel_values=x).logits
    assert (before - after).abs().max().item() < 1e-4
    assert reloaded.config.id2label[0] == "surprise"
