"""Top-label calibration: the leading cause's probability mapped to how often answers at that probability were right
on reports the weights were not fitted on.

The fitted softmax (scoring.label_probabilities), even at its best temperature, is overconfident between 0.8 and 0.95
and underconfident below 0.4: one temperature cannot fix both ends. A monotone map can: isotonic regression of
"the leading cause was right" on its probability (pool-adjacent-violators; Zadrozny & Elkan 2002), applied to the
leading cause only (top-label calibration, Gupta & Ramdas 2021). evals/fit_weights.py fits the map on held-out
predictions and stores its knots beside the weights; the ranking applies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

Knots = tuple[tuple[float, float], ...]   # (probability as fitted, share of such answers that were right), rising
K = TypeVar("K")


def fit_confidence_map(answers: Iterable[tuple[float, bool]]) -> Knots:
    """The isotonic map of held-out (probability, right) pairs: one knot per pooled block, at the block's mean
    probability, valued at its share right with one right and one wrong answer added (Laplace's rule of succession),
    so a block that was always right maps to just under 1, never to certainty."""
    tied: dict[float, list[float]] = {}   # answers at one probability form one block from the start
    for p, right in answers:
        block = tied.setdefault(float(p), [0.0, 0.0, 0.0])
        block[0] += float(p)
        block[1] += float(bool(right))
        block[2] += 1.0
    blocks: list[list[float]] = []   # [sum of probabilities, right answers, answers]
    for _, block in sorted(tied.items()):
        blocks.append(block)
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            last = blocks.pop()
            blocks[-1] = [a + b for a, b in zip(blocks[-1], last)]
    knots: list[tuple[float, float]] = []
    for total_p, right, n in blocks:
        share = (right + 1.0) / (n + 2.0)
        knots.append((total_p / n, max(share, knots[-1][1] if knots else 0.0)))
    return tuple(knots)


def calibrated(p: float, knots: Knots) -> float:
    """`p` through the map: linear between knots, flat beyond the first and last; unchanged when there is no map."""
    if not knots:
        return p
    if p <= knots[0][0]:
        return knots[0][1]
    for (p0, q0), (p1, q1) in zip(knots, knots[1:]):
        if p <= p1:
            return q1 if p1 <= p0 else q0 + (q1 - q0) * (p - p0) / (p1 - p0)
    return knots[-1][1]


def calibrate_top(probabilities: Mapping[K, float], knots: Knots) -> dict[K, float]:
    """The leading cause's probability through the map; the others keep their odds against each other and share what
    is left, so the total stays what it was. No map, or no cause with any probability, leaves them as they are."""
    out = dict(probabilities)
    if not knots or not out:
        return out
    top = max(out, key=lambda k: out[k])
    p = out[top]
    if p <= 0.0:
        return out
    q = calibrated(p, knots)
    rest = (1.0 - q) / (1.0 - p) if p < 1.0 else 0.0
    return {k: (q if k == top else v * rest) for k, v in out.items()}
