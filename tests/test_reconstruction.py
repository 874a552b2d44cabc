"""reconstructions.png (modeling/evaluation/reconstruction.py): original | masked | reconstruction, titled."""

import numpy as np
import torch
from transformers import ViTMAEForPreTraining

from modeling.evaluation.reconstruction import COLUMN_TITLES, reconstruct, reconstruction_grid
from tests.tiny import tiny_mae_config

SIZE, SCALE, PAD = 48, 2, 2  # FER+ faces are 48 px; the grid doubles them and pads 2 px, doubled too


def test_the_grid_titles_its_three_columns_over_the_faces_it_shows():
    torch.manual_seed(0)
    model = ViTMAEForPreTraining(tiny_mae_config(image_size=SIZE, patch_size=8))
    pixel_values = torch.rand(2, 3, SIZE, SIZE) * 2 - 1  # normalised with mean = std = 0.5

    grid = np.asarray(reconstruction_grid(model, pixel_values, [0.5] * 3, [0.5] * 3, seed=3, scale=SCALE))

    cell, step = SIZE * SCALE, (SIZE + PAD) * SCALE
    band = grid.shape[0] - (2 * step + PAD * SCALE)  # the title band above the rows
    assert grid.shape[1] == 3 * step + PAD * SCALE and 12 <= band <= 30, grid.shape
    for col in range(3):  # dark title text over each column, none between them
        x = PAD * SCALE + col * step
        assert (grid[:band, x : x + cell].max(axis=-1) < 100).sum() > 20, COLUMN_TITLES[col]
        assert (grid[:band, x + cell : x + step] == 255).all()
    # under the band, the faces as before: the original, then the reconstruction of the same seeded mask
    top = band + PAD * SCALE
    original = ((pixel_values[0].permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(grid[top : top + cell : SCALE, PAD * SCALE : PAD * SCALE + cell : SCALE], original)
    _, recon, _ = reconstruct(model, pixel_values, seed=3)
    shown = ((recon[0].permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    x = PAD * SCALE + 2 * step
    np.testing.assert_array_equal(grid[top : top + cell : SCALE, x : x + cell : SCALE], shown)
