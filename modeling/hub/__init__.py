"""Sharing a model: model cards, Hub upload, and the model shipped inside the package.

- ``model_card``: the card rendered from measured results.
- ``push``: upload a saved model folder, ``python -m modeling.hub.push``.
- ``ship``, ``ship_card``: put a trained FER+ classifier into ``modeling/default_model/`` with its card,
  ``python -m modeling.hub.ship``.
- ``recreate``: re-create the shipped model from the FER+ download, ``python -m modeling.hub.recreate``.
"""
