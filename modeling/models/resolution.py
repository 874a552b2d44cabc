"""A ViT classifier moved to another input size: its position table resampled to the new token grid.

A ViT's cost and detail grow with its token grid. On 48 px FER+ faces, patch 6 gives 8 x 8 tokens; the same
model fed the faces at 72 px gives 12 x 12 tokens with every weight reused, only the learned position table
resampled (bicubic over the grid, the class token's entry kept: ``timm_names.resize_pos_embed``, shared with the
checkpoint importer), and is then fine-tuned at the new size. This is
the higher-resolution fine-tuning of ViT (Dosovitskiy et al., ICLR 2021, section 3.2) and FixRes (Touvron et al.,
NeurIPS 2019); MAE and DeiT resample their tables the same way. The result is a plain
``ViTForImageClassification`` whose ``config.image_size`` is the new size, so ``from_pretrained`` and
``pipeline()`` feed it correctly sized faces with no ``interpolate_pos_encoding`` at run time.
"""

from __future__ import annotations

import copy
import logging

from transformers import ViTForImageClassification

from .timm_names import resize_pos_embed

logger = logging.getLogger(__name__)


def resize_classifier(model: ViTForImageClassification, image_size: int) -> ViTForImageClassification:
    """A new classifier for ``image_size`` px input with ``model``'s weights and a resampled position table.

    ``image_size`` must be a multiple of the patch size. ``model`` is left as it was; the result's config differs
    only in ``image_size``.
    """
    config = model.config
    patch = config.patch_size
    if image_size <= 0 or image_size % patch:
        raise ValueError(f"image size {image_size} is not a positive multiple of the patch size {patch}")
    if image_size == config.image_size:
        return model
    new_config = copy.deepcopy(config)
    new_config.image_size = image_size
    resized = ViTForImageClassification(new_config).to(next(model.parameters()).dtype)
    state = model.state_dict()
    key = "vit.embeddings.position_embeddings"
    state[key] = resize_pos_embed(state[key], image_size // patch)  # the class token's row kept
    resized.load_state_dict(state, strict=True)
    resized.train(model.training)
    for name, param in model.named_parameters():
        resized.get_parameter(name).requires_grad_(param.requires_grad)
    logger.info(
        "Resized the classifier from %dpx (%d x %d tokens) to %dpx (%d x %d tokens), position table resampled",
        config.image_size,
        config.image_size // patch,
        config.image_size // patch,
        image_size,
        image_size // patch,
        image_size // patch,
    )
    return resized
