"""Using a trained classifier: the predictor, the ``fer-predict`` command, faces, arithmetic, export, evaluation.

- ``predictor``: ``FERPredictor``, batched classification of face crops (torch, plain torch or ONNX Runtime).
- ``fer_predict``: the ``fer-predict`` command (``python -m modeling.inference.fer_predict``).
- ``faces``: face detection behind a small interface, and cropping.
- ``media``: the files of ``fer-predict``: inputs listed and read, annotated copies drawn, named and written.
- ``precision``: which arithmetic a run uses (bf16, float32, int8), decided by the hardware.
- ``vit_runtime``: a saved ViT classifier in plain torch, without importing transformers' model code.
- ``export``: ONNX export checked against PyTorch, ``python -m modeling.inference.export``.
- ``evaluate``: the evaluation report of a saved classifier on a dataset split,
  ``python -m modeling.inference.evaluate``.
- ``shipped``: where the model shipped in the package (``modeling/default_model/``) is.
"""
