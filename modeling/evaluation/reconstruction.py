"""Original / masked / reconstruction grids of an MAE, the picture that shows pretraining works.

The reconstruction is shown in pixel space: with ``norm_pix_loss`` the decoder predicts each
patch normalised by its own mean and variance, so the prediction is un-normalised with the
statistics of the original patch before display (as the MAE demo notebook does; He et al. 2022).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from transformers import ViTMAEForPreTraining

COLUMN_TITLES = ("original", "masked", "reconstruction")


def _to_uint8(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``[N, 3, H, W]`` normalised -> ``[N, H, W, 3]`` uint8."""
    mean_t = torch.tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    pixels = (images * std_t + mean_t).clamp(0, 1)
    return (pixels.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def reconstruct(
    model: ViTMAEForPreTraining, pixel_values: torch.Tensor, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the MAE on ``pixel_values [N, 3, H, W]`` with a seeded mask.

    Returns ``(masked [N, 3, H, W], reconstruction [N, 3, H, W], mask [N, L])``, all in the
    normalised input space; ``mask`` is 1 where a patch was removed. Visible patches of the
    reconstruction are pasted from the input, as in MAE's visualisation.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pixel_values = pixel_values.to(device)
    n = pixel_values.shape[0]
    num_patches = model.vit.embeddings.patch_embeddings.num_patches
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, num_patches, generator=generator).to(device)
    out = model(pixel_values=pixel_values, noise=noise)
    pred = out.logits  # [N, L, p*p*3]
    if model.config.norm_pix_loss:
        target = model.patchify(pixel_values)
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        pred = pred * (var + 1.0e-6) ** 0.5 + mean
    mask = out.mask  # [N, L], 1 = removed
    patch_mask = mask.unsqueeze(-1).expand_as(pred)
    image_size = (pixel_values.shape[2], pixel_values.shape[3])
    masked = model.unpatchify(model.patchify(pixel_values) * (1 - patch_mask), original_image_size=image_size)
    recon = model.unpatchify(
        model.patchify(pixel_values) * (1 - patch_mask) + pred * patch_mask, original_image_size=image_size
    )
    model.train(was_training)
    return masked.float().cpu(), recon.float().cpu(), mask.cpu()


def _title_font(column_width: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib, a dependency) at the largest size, from 1/8 of the column's width (12 to
    28 px) down to 8 px, at which the longest title fits a column: FER+ faces are 48 px, 96 px in the grid (11 px)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    longest = max(COLUMN_TITLES, key=len)
    for size in range(min(28, max(12, column_width // 8)), 7, -1):
        font = ImageFont.truetype(str(path), size)
        if font.getlength(longest) <= column_width - 4:
            break
    return font


def _with_titles(grid: Image.Image, columns: int, width: int, pad: int) -> Image.Image:
    """``grid`` under a white band with ``COLUMN_TITLES`` centred over its ``columns`` columns of ``width`` px."""
    font = _title_font(width)
    left, top, right, bottom = font.getbbox("".join(COLUMN_TITLES))
    band = bottom + 2 * pad + 2
    titled = Image.new("RGB", (grid.width, grid.height + band), "white")
    titled.paste(grid, (0, band))
    draw = ImageDraw.Draw(titled)
    for col, title in enumerate(COLUMN_TITLES[:columns]):
        x = pad + col * (width + pad) + (width - font.getlength(title)) / 2
        draw.text((x, pad + 1), title, fill="black", font=font)
    return titled


def reconstruction_grid(
    model: ViTMAEForPreTraining,
    pixel_values: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int = 0,
    scale: int = 2,
) -> Image.Image:
    """One row per face: original | masked | reconstruction, as a PIL image (upscaled ``scale`` times), with the
    columns' titles on top."""
    masked, recon, _ = reconstruct(model, pixel_values, seed=seed)
    columns = [
        _to_uint8(pixel_values.float().cpu(), mean, std),
        _to_uint8(masked, mean, std),
        _to_uint8(recon, mean, std),
    ]
    n, h, w, _ = columns[0].shape
    pad = 2
    grid = np.full((n * (h + pad) + pad, 3 * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for row in range(n):
        for col, images in enumerate(columns):
            y, x = pad + row * (h + pad), pad + col * (w + pad)
            grid[y : y + h, x : x + w] = images[row]
    image = Image.fromarray(grid)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return _with_titles(image, len(columns), w * scale, pad * scale)
