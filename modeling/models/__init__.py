"""The networks: ViT/MAE size presets and configs, MAE initialisation, drop path, and checkpoint conversions.

- ``sizes``: size presets -> ``ViTMAEConfig`` / ``ViTConfig`` and the image processor.
- ``mae``: a from-scratch ``ViTMAEForPreTraining`` initialised as MAE intends.
- ``drop_path``: stochastic depth hooks for transformers' ViT encoder.
- ``mae_to_vit``: an MAE of this package -> ``ViTForImageClassification`` (clean config, checked keys).
- ``timm_names``: pure key renames from timm / facebookresearch/mae names to transformers names.
- ``import_checkpoint``: foreign checkpoints (``.pth``, timm, ``.safetensors``) -> saved transformers models,
  ``python -m modeling.models.import_checkpoint``.
- ``file_modes``: saved weights get the umask's file mode like every other output (safetensors writes 0600).
"""
