import pytest

from modeling import labels as L
from modeling.models.sizes import ENCODER_PRESETS, IMAGENET_MEAN, mae_config, vit_config


def test_every_dataset_order_uses_only_canonical_lowercase_names():
    for name, order in L.DATASET_LABELS.items():
        assert set(order) <= set(L.EMOTIONS), name
        assert all(n == n.lower() for n in order)
        assert len(set(order)) == len(order)


def test_official_orders_match_the_dataset_documentation():
    # RAF-DB labels 1..7, AffectNet 0..7, FER+ vote columns (NOTES #20-22).
    assert L.labels_for("rafdb") == ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
    assert L.labels_for("affectnet") == (
        "neutral",
        "happiness",
        "sadness",
        "surprise",
        "fear",
        "disgust",
        "anger",
        "contempt",
    )
    assert L.labels_for("affectnet", "7") == L.AFFECTNET8_LABELS[:7]
    assert L.labels_for("ferplus")[:3] == ("neutral", "happiness", "surprise")
    assert L.FERPLUS_VOTE_COLUMNS[-2:] == ("unknown", "not_face")


def test_unknown_dataset_names_are_refused():
    with pytest.raises(ValueError, match="No official label order"):
        L.labels_for("ckplus")


def test_id2label_and_label2id_are_inverse_and_refuse_duplicates():
    names = L.labels_for("rafdb")
    assert {v: k for k, v in L.id2label(names).items()} == L.label2id(names)
    with pytest.raises(ValueError, match="unique"):
        L.id2label(["anger", "anger"])


def test_remap_indices_maps_between_dataset_orders():
    idx = L.remap_indices(L.RAFDB_LABELS, L.FERPLUS_LABELS)
    assert [L.FERPLUS_LABELS[i] for i in idx] == list(L.RAFDB_LABELS)
    with pytest.raises(ValueError, match="contempt"):
        L.remap_indices(L.FERPLUS_LABELS, L.RAFDB_LABELS)


@pytest.mark.parametrize("size", list(ENCODER_PRESETS))
def test_one_preset_gives_matching_mae_and_vit_encoders(size):
    mae = mae_config(size, image_size=112, patch_size=16)
    vit = vit_config(size, image_size=112, patch_size=16, labels=L.FERPLUS_LABELS)
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size"):
        assert getattr(mae, field) == getattr(vit, field)
    assert mae.layer_norm_eps == vit.layer_norm_eps == 1e-6
    assert vit.num_labels == 8 and vit.id2label[1] == "happiness"


def test_base_preset_has_the_mae_paper_decoder():
    cfg = mae_config("base")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (768, 12, 12)
    assert (cfg.decoder_hidden_size, cfg.decoder_num_hidden_layers) == (512, 8)
    assert cfg.mask_ratio == 0.75 and cfg.norm_pix_loss


def test_presets_refuse_unknown_sizes_and_bad_patch_sizes():
    with pytest.raises(ValueError, match="Unknown model size"):
        mae_config("huge2")
    with pytest.raises(ValueError, match="multiple of patch_size"):
        vit_config("tiny", image_size=50, patch_size=16)


def test_image_processor_uses_imagenet_statistics():
    from modeling.models.sizes import image_processor_for

    proc = image_processor_for(48)
    assert tuple(proc.image_mean) == IMAGENET_MEAN
    assert proc.size == {"height": 48, "width": 48}
