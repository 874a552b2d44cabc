"""FER+ label protocols: from the 10 annotator vote counts to a class (or an exclusion reason).

Vote order (FER+ ``label.csv`` / ``fer2013new.csv``): neutral, happiness, surprise, sadness,
anger, disgust, fear, contempt, unknown, NF. The rules follow the FER+ paper (Barsoum et al.
2016, arXiv:1608.01041) as implemented in ``_process_data`` of microsoft/FERPlus
``src/ferplus.py`` (re-implemented here, not copied):

* every protocol first zeroes counts of 1 ("outlier removal"), except ``plurality``;
* ``majority`` (the paper's and the literature's protocol): keep the image when its top count
  holds more than half of the remaining votes and is one of the 8 emotions;
* ``probability`` (FERPlus' "probability"/"crossentropy" target): take the largest counts in
  rounds (all counts equal to the current maximum join together) until they hold 75% of the
  votes, 3 entries are taken, or unknown/NF comes up (unknown/NF taken after an emotion is
  dropped from the selection); discard the image when the selection holds no more than half of
  the votes, has more than 3 entries, or its top entry is unknown/NF. ``soft_label`` is the
  selection renormalised over the 8 emotions, ``label`` its first argmax;
* ``plurality`` (common in later papers, not in FER+): raw counts, the single most-voted of the
  10 columns must be an emotion; ties for the top are excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

NUM_VOTES = 10
NUM_EMOTIONS = 8
PROTOCOLS = ("majority", "probability", "plurality")


@dataclass(frozen=True)
class Target:
    label: int | None  # index into FERPLUS_LABELS, None when excluded
    reason: str | None = None  # why it is excluded
    soft_label: tuple[float, ...] | None = None  # over the 8 emotions, for "probability"


def _drop_single_votes(votes: list[int]) -> list[int]:
    return [0 if v <= 1 else v for v in votes]


def majority(votes: list[int]) -> Target:
    counts = _drop_single_votes(votes)
    total = sum(counts)
    if total == 0:
        return Target(None, "no votes of 2 or more")
    top = max(counts)
    if top * 2 <= total:
        return Target(None, "no majority")
    index = counts.index(top)
    if index >= NUM_EMOTIONS:
        return Target(None, "majority unknown or not a face")
    return Target(index)


def probability(votes: list[int]) -> Target:
    counts = _drop_single_votes(votes)
    total = sum(counts)
    if total == 0:
        return Target(None, "no votes of 2 or more")
    remaining = list(counts)
    chosen = [0] * NUM_VOTES
    taken, covered, hit_non_emotion = 0, 0, False
    while covered < 0.75 * total and taken < 3 and not hit_non_emotion:
        top = max(remaining)
        for i in range(NUM_VOTES):
            if remaining[i] != top:
                continue
            chosen[i], remaining[i] = top, 0
            covered += top
            taken += 1
            if i >= NUM_EMOTIONS:  # unknown / NF reached: stop; drop it if an emotion came first
                hit_non_emotion = True
                if sum(chosen) > top:
                    chosen[i] = 0
                    taken -= 1
                break
    if sum(chosen) * 2 <= total or taken > 3:
        return Target(None, "votes too spread")
    index = chosen.index(max(chosen))
    if index >= NUM_EMOTIONS:
        return Target(None, "top unknown or not a face")
    emotions = chosen[:NUM_EMOTIONS]
    norm = float(sum(emotions))
    return Target(index, soft_label=tuple(v / norm for v in emotions))


def plurality(votes: list[int]) -> Target:
    top = max(votes)
    if top == 0:
        return Target(None, "no votes")
    if votes.count(top) > 1:
        return Target(None, "tie for the top")
    index = votes.index(top)
    if index >= NUM_EMOTIONS:
        return Target(None, "top unknown or not a face")
    return Target(index)


def target(votes: list[int], protocol: str) -> Target:
    """The class of one image under ``protocol`` (one of :data:`PROTOCOLS`)."""
    if len(votes) != NUM_VOTES:
        raise ValueError(f"expected {NUM_VOTES} vote counts, got {len(votes)}")
    if protocol == "majority":
        return majority(votes)
    if protocol == "probability":
        return probability(votes)
    if protocol == "plurality":
        return plurality(votes)
    raise ValueError(f"unknown FER+ protocol {protocol!r}; choose one of {PROTOCOLS}")
