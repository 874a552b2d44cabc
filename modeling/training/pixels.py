"""uint8 faces -> normalised float pixels, on whatever device they are: the last step of the fast input path
(:mod:`modeling.training.fast_input`), run by its collator on CPU or by the trainers on an accelerator.

Kept apart from :mod:`modeling.training.fast_input` so that the trainers import only torch here (no OpenCV, no
datasets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class PixelNormalizer:
    """uint8 faces ``[N, C, S, S]`` (C = 1 broadcasts to RGB) -> float ``(x / 255 - mean) / std`` ``[N, 3, S, S]``
    on the faces' device, with random-erasing boxes ``[N, 4]`` (top, left, h, w; h = 0: none) set to 0 afterwards,
    as ``v2.RandomErasing(value=0)`` after ``Normalize``. One implementation for the collator (CPU) and for the
    trainers, which call it on the accelerator when the loader hands over uint8
    (:class:`~modeling.training.fast_input.PixelCollator` ``on_device``).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 channels, got {list(mean)} and {list(std)}")
        self.scale_c = [1.0 / (255.0 * s) for s in std]
        self.shift_c = [-m / s for m, s in zip(mean, std)]
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Loader workers started by pickling (spawn) get the collator: without device tensors, which would make
        # them initialise CUDA.
        return {**self.__dict__, "_constants": {}}

    def __call__(
        self, pixels: torch.Tensor, erase: torch.Tensor | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        if pixels.dtype != torch.uint8 or pixels.dim() != 4 or pixels.shape[1] not in (1, 3):
            raise ValueError(f"expected uint8 faces [N, 1 or 3, H, W], got {pixels.dtype} {tuple(pixels.shape)}")
        if erase is not None and tuple(erase.shape) != (pixels.shape[0], 4):
            raise ValueError(f"expected erasing boxes [{pixels.shape[0]}, 4], got {tuple(erase.shape)}")
        if pixels.device.type == "cpu":
            return self.per_channel(pixels, erase, out)
        x = self.broadcast(pixels, erase)
        return x if out is None else out.copy_(x)

    def per_channel(self, pixels: torch.Tensor, erase: torch.Tensor | None, out: torch.Tensor | None = None):
        """The CPU path: x * scale + shift written once per output channel straight from uint8 (no float copy of
        the input), then the boxes one by one (only their pixels are touched)."""
        n, _, h, w = pixels.shape
        out = torch.empty((n, 3, h, w), dtype=torch.float32) if out is None else out
        for c in range(3):
            source = pixels[:, c if pixels.shape[1] == 3 else 0]
            torch.add(self.shift_c[c], source, alpha=self.scale_c[c], out=out[:, c])
        return out if erase is None else erase_boxes(out, erase)

    def broadcast(self, pixels: torch.Tensor, erase: torch.Tensor | None) -> torch.Tensor:
        """The accelerator path: one broadcast expression, the boxes as one mask (no per-face kernel launches,
        no host synchronisation)."""
        n, _, h, w = pixels.shape
        device = pixels.device
        if device not in self._constants:  # copied to the device once, not at every step
            self._constants[device] = (
                torch.tensor(self.scale_c, device=device).view(1, 3, 1, 1),
                torch.tensor(self.shift_c, device=device).view(1, 3, 1, 1),
            )
        scale, shift = self._constants[device]
        x = torch.addcmul(shift, pixels.float(), scale)
        if erase is None:
            return x
        top, left, bh, bw = erase.to(device).unbind(1)
        rows = torch.arange(h, device=device).view(1, h)
        cols = torch.arange(w, device=device).view(1, w)
        in_rows = (rows >= top.view(n, 1)) & (rows < (top + bh).view(n, 1))
        in_cols = (cols >= left.view(n, 1)) & (cols < (left + bw).view(n, 1))
        return x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1), 0.0)


def erase_boxes(pixels: torch.Tensor, erase: torch.Tensor) -> torch.Tensor:
    """Sets each face's box ``(top, left, h, w)`` of ``erase`` ``[N, 4]`` to 0 in place, one face at a time (only the
    boxes' pixels are touched; h or w = 0: no box); returns ``pixels``."""
    for i, (top, left, h, w) in enumerate(erase.tolist()):
        if h and w:
            pixels[i, :, top : top + h, left : left + w] = 0.0
    return pixels


class NormalizeOnDevice:
    """Trainer mixin: a batch whose ``pixel_values`` are uint8 (from ``PixelCollator(on_device=True)``) is normalised
    and erased on the training device, after the Trainer has moved it there, with the data collator's
    :attr:`~modeling.training.fast_input.PixelCollator.normalizer`; float batches pass unchanged. Applies to training,
    evaluation and prediction (all go through ``_prepare_inputs``)."""

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = super()._prepare_inputs(inputs)
        pixels = inputs.get("pixel_values")
        if isinstance(pixels, torch.Tensor) and pixels.dtype == torch.uint8:
            normalizer = getattr(self.data_collator, "normalizer", None)
            if normalizer is None:
                raise ValueError(
                    f"uint8 pixel_values need normalising, but the data collator {type(self.data_collator).__name__} "
                    "has no `normalizer`; use modeling.training.fast_input.PixelCollator(mean, std, on_device=True)"
                )
            inputs = dict(inputs)
            inputs["pixel_values"] = normalizer(pixels, inputs.pop("pixel_erase", None))
        return inputs


def normalize_on_device(training_args: Any, requested: bool | None = None) -> bool:
    """``requested`` if given, else whether a Trainer with these ``TrainingArguments`` trains on an accelerator
    (CUDA, XPU, MPS ...), where uint8 batches normalised on the device beat normalising in the loader; on CPU the
    loader's workers share that work instead."""
    return training_args.device.type != "cpu" if requested is None else requested
