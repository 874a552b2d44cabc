"""Scores and figures: offline classification metrics, evaluation plots, MAE reconstruction grids.

- ``metrics``: accuracy, balanced accuracy, macro F1, per-class recall, confusion matrix (pure functions).
- ``plots``: confusion matrix and image grids as PNG files.
- ``reconstruction``: original / masked / reconstruction grids of an MAE.
"""
