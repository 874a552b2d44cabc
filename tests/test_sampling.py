"""Class weights per scheme, the epoch-seeded sampler, and its sharding under a real 2-rank torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.training.sampling import EpochSeededWeightedSampler, class_probabilities, class_weights

ROOT = Path(__file__).resolve().parents[1]
# 600 / 300 / 60 / 40 samples of classes 0..3: natural frequencies 0.6 / 0.3 / 0.06 / 0.04.
SKEWED = [0] * 600 + [1] * 300 + [2] * 60 + [3] * 40
COUNTS = np.array([600, 300, 60, 40])


def drawn_frequencies(weights: np.ndarray, num_draws: int = 40_000, seed: int = 0) -> np.ndarray:
    sampler = EpochSeededWeightedSampler(weights, num_samples=num_draws, seed=seed)
    labels = np.asarray(SKEWED)[sampler.indices(0)]
    return np.bincount(labels, minlength=4) / num_draws


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("none", COUNTS / COUNTS.sum()),
        ("inverse", np.full(4, 0.25)),
        ("sqrt", np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()),
        # capped at 3x: classes 2 and 3 pinned at 0.18 and 0.12, classes 0 and 1 share the rest equally.
        ("capped", np.array([0.35, 0.35, 0.18, 0.12])),
    ],
)
def test_drawn_class_histogram_matches_each_scheme(scheme, expected):
    weights = class_weights(SKEWED, scheme, max_oversampling=3.0)
    assert weights.shape == (len(SKEWED),)
    assert weights.sum() == pytest.approx(1.0)
    for c in range(4):  # total weight of a class is exactly its draw probability
        assert weights[np.asarray(SKEWED) == c].sum() == pytest.approx(expected[c])
    # 40k draws: the standard error of a frequency is at most 0.0025, so 0.01 is four of them.
    np.testing.assert_allclose(drawn_frequencies(weights), expected, atol=0.01)


def test_capped_scheme_never_oversamples_a_class_beyond_the_cap_and_spans_none_to_inverse():
    freq = COUNTS / COUNTS.sum()
    for cap in (1.0, 1.5, 2.0, 3.0, 5.0, 100.0):
        probs = class_probabilities(COUNTS, "capped", cap)
        assert probs.sum() == pytest.approx(1.0)
        assert (probs / freq <= cap + 1e-9).all()
        uncapped = probs / freq < cap - 1e-9
        if uncapped.any():  # the uncapped classes share one level
            assert np.ptp(probs[uncapped]) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(class_probabilities(COUNTS, "capped", 1.0), freq)
    np.testing.assert_allclose(class_probabilities(COUNTS, "capped", 100.0), np.full(4, 0.25))


def test_class_weights_reject_unknown_schemes_and_non_integer_labels():
    with pytest.raises(ValueError, match="Unknown sampling scheme"):
        class_weights(SKEWED, "balanced")
    with pytest.raises(ValueError, match="integer class ids"):
        class_weights([0.5, 1.0], "inverse")
    with pytest.raises(ValueError, match="max_oversampling"):
        class_weights(SKEWED, "capped", max_oversampling=0.5)


def test_the_same_seed_and_epoch_give_the_same_stream_and_other_epochs_or_seeds_differ():
    weights = class_weights(SKEWED, "sqrt")
    a = EpochSeededWeightedSampler(weights, seed=7)
    b = EpochSeededWeightedSampler(weights, seed=7)
    assert a.indices(0) == b.indices(0)
    assert a.indices(0) != a.indices(1)
    assert a.indices(0) != EpochSeededWeightedSampler(weights, seed=8).indices(0)
    assert len(a) == len(SKEWED) and len(list(a)) == len(SKEWED)


def test_each_pass_advances_the_epoch_and_set_epoch_selects_it():
    sampler = EpochSeededWeightedSampler(class_weights(SKEWED, "inverse"), num_samples=50, seed=3)
    first, second = list(sampler), list(sampler)
    assert first == sampler.indices(0) and second == sampler.indices(1)
    sampler.set_epoch(0)
    assert list(sampler) == first
    sampler.set_epoch(5)
    assert list(sampler) == sampler.indices(5)


def test_the_sampler_does_not_touch_the_global_torch_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(EpochSeededWeightedSampler(class_weights(SKEWED, "inverse"), seed=1))
    torch.testing.assert_close(torch.rand(3), expected)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_torchrun_ranks_train_on_disjoint_shards_of_one_identical_stream_in_every_epoch(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from ddp_sampler_worker import BATCH_SIZE, NUM_SAMPLES, SEED, skewed_labels

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(ROOT / "tests" / "ddp_sampler_worker.py"), str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    reference = EpochSeededWeightedSampler(class_weights(skewed_labels(), "inverse"), NUM_SAMPLES, seed=SEED)
    steps = NUM_SAMPLES // (2 * BATCH_SIZE)
    streams = []
    for epoch in range(2):
        shards = [r["batches"][epoch * steps : (epoch + 1) * steps] for r in ranks]
        # accelerate gives rank r the batches r::2 of the one stream: interleave them back.
        interleaved = [i for pair in zip(*shards) for batch in pair for i in batch]
        assert interleaved == reference.indices(epoch)
        streams.append(interleaved)
    assert all(len(r["batches"]) == 2 * steps for r in ranks)
    assert streams[0] != streams[1]
    assert Counter(streams[0]) != Counter(range(NUM_SAMPLES))  # drawn with replacement, weighted
