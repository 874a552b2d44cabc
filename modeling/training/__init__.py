"""Training: the Trainer glue of ``run_mae.py`` and ``run_finetune.py`` and the pure helpers it calls.

- ``trainer``: ``FERTrainer``, a Trainer subclass overriding the sampler, optimizer, loss and input step.
- ``sampling``, ``losses``, ``lr_decay``: class-balanced sampling, soft-target losses, parameter groups.
- ``transforms``, ``fast_input``, ``pixels``: the reference and the fast input pipelines.
- ``checkpoints``: exact resume and best-model restore.
- ``finetuning``, ``pretraining``, ``stages``, ``recipes``: what the two scripts share, and JSON recipes.
- ``logit_adjustment``: post-hoc logit adjustment chosen on validation.
- ``probe``: linear probing of a frozen encoder, ``python -m modeling.training.probe``.
"""
