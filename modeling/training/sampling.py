"""Class-balanced sampling: per-sample weights (pure) and an epoch-seeded weighted sampler.

Schemes, in terms of the draw probability ``p_c`` of class ``c`` and its natural frequency
``f_c = n_c / N`` (``K`` classes present):

- ``none``: ``p_c = f_c`` (every sample equally likely, the natural distribution).
- ``inverse``: per-sample weight ``1 / n_c``, so ``p_c = 1 / K``: each class is drawn equally often.
- ``sqrt``: per-sample weight ``1 / sqrt(n_c)``, so ``p_c`` is proportional to ``sqrt(n_c)``.
- ``capped``: as close to ``inverse`` as allowed while no class is oversampled by more than
  ``max_oversampling`` relative to its natural frequency, i.e. ``p_c <= max_oversampling * f_c``.
  Solved by water-filling: ``p_c = min(t, max_oversampling * f_c)`` with the level ``t`` chosen so the
  ``p_c`` sum to 1. Classes below the cap share one equal probability ``t``; ``max_oversampling = 1``
  gives ``none``, a large enough value gives ``inverse``.

The sampler draws with replacement from its own ``torch.Generator`` seeded with ``seed + epoch``. Under
DDP, accelerate shards ONE sample stream by batches (rank ``r`` gets batches ``r::world_size``) and
does not synchronise a custom sampler's RNG (NOTES #6); the explicit generator makes every rank
build the identical stream, so the shards are disjoint positions of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)

SAMPLING_SCHEMES: tuple[str, ...] = ("none", "inverse", "sqrt", "capped")


def class_probabilities(counts: np.ndarray, scheme: str, max_oversampling: float = 3.0) -> np.ndarray:
    """Draw probability ``p_c`` of each class under ``scheme``; counts: ``[K]`` positive class sizes."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or (counts <= 0).any():
        raise ValueError(f"class counts must be a non-empty 1-D array of positive sizes, got {counts!r}")
    freq = counts / counts.sum()
    if scheme == "none":
        probs = freq
    elif scheme == "inverse":
        probs = np.full_like(freq, 1.0 / freq.size)
    elif scheme == "sqrt":
        probs = np.sqrt(counts)
    elif scheme == "capped":
        if max_oversampling < 1.0:
            raise ValueError(f"max_oversampling must be >= 1 (1 means no oversampling), got {max_oversampling}")
        cap = max_oversampling * freq
        capped = np.zeros(freq.size, dtype=bool)
        # Water-filling: a class whose cap lies below the shared level is pinned at its cap and the
        # remaining mass is shared equally by the others; at most K rounds.
        level = 1.0 / freq.size
        for _ in range(freq.size):
            newly = ~capped & (cap < level * (1.0 - 1e-12))
            if not newly.any():
                break
            capped |= newly
            if capped.all():  # only when max_oversampling == 1: every class at its natural frequency
                break
            level = (1.0 - cap[capped].sum()) / (~capped).sum()
        probs = np.where(capped, cap, level)
    else:
        raise ValueError(f"Unknown sampling scheme {scheme!r}; choose one of {list(SAMPLING_SCHEMES)}")
    return probs / probs.sum()


def class_weights(labels: Sequence[int] | np.ndarray, scheme: str, max_oversampling: float = 3.0) -> np.ndarray:
    """Per-sample weights ``[N]`` (float64, summing to 1) drawing the classes as ``scheme`` prescribes.

    labels: ``[N]`` integer class ids. The weight of a sample of class ``c`` is ``p_c / n_c`` with ``p_c``
    from :func:`class_probabilities` (see the module docstring), so the total weight of class ``c`` is
    exactly its draw probability. Classes absent from ``labels`` get no mass.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence of class ids, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    probs = class_probabilities(counts, scheme, max_oversampling)
    logger.info(
        "Sampling scheme %s: class draw probabilities %s",
        scheme,
        {int(c): round(float(p), 4) for c, p in zip(classes, probs)},
    )
    return (probs / counts)[inverse]


class EpochSeededWeightedSampler(Sampler[int]):
    """Draws ``num_samples`` indices with replacement, proportionally to ``weights``, reproducibly per epoch.

    Each pass uses a fresh ``torch.Generator`` seeded with ``seed + epoch``, so all DDP ranks yield
    the identical stream in every epoch and accelerate's batch sharding gives them disjoint parts of it.

    Epoch bookkeeping: ``set_epoch(e)`` selects the epoch of the next pass, and every ``__iter__``
    advances the epoch by one afterwards. The Trainer (transformers 5.x) reaches ``set_epoch`` through
    accelerate's ``DataLoaderShard.set_epoch``; without a caller the streams still differ per pass and
    stay identical across ranks, because every rank iterates its sampler once per epoch.
    """

    def __init__(
        self, weights: Sequence[float] | np.ndarray | torch.Tensor, num_samples: int | None = None, seed: int = 0
    ):
        weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if weights.dim() != 1 or weights.numel() == 0:
            raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {tuple(weights.shape)}")
        if (weights < 0).any() or not torch.isfinite(weights).all() or weights.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        self.weights = weights
        self.num_samples = int(num_samples) if num_samples is not None else weights.numel()
        if self.num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {self.num_samples}")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose stream the next ``__iter__`` yields."""
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> list[int]:
        """The full stream of sample indices for ``epoch`` (pure: the same for the same seed and epoch)."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        stream = self.indices(self.epoch)
        self.epoch += 1
        return iter(stream)

    def __len__(self) -> int:
        return self.num_samples
