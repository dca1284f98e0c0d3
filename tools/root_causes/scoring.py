"""The one scorer: signals → ranked RootCauses. Support adds weight x value points to its label, a discount
multiplies the label's points; score = 1 - exp(-points / scale), causes under the cut-off dropped, the rest ranked.

No rule decides alone, the sum does; ties keep the order in which the labels first gained points."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..labels import Label, RootCause
from .calibration import calibrate_top
from .signals import Kind, Signal
from .weights import DEFAULT_WEIGHTS, SCORE_DECIMALS, Weights


def signal_points(signal: Signal, weights: Weights = DEFAULT_WEIGHTS) -> float:
    """The points one support signal adds: the weight of its rule x its value."""
    return _weight(signal, weights) * signal.value


def has_evidence(signals: Iterable[Signal], weights: Weights = DEFAULT_WEIGHTS) -> bool:
    """Some label gains enough points to be ranked: evidence too weak to rank any cause is no evidence, so the
    ranking is never empty where the evidence only whispered."""
    final, _ = _label_points(signals, weights)
    return any(p > weights.thresholds["min_points"] for p in final.values())


def _label_points(signals: Iterable[Signal], weights: Weights) -> tuple[dict[Label, float], dict[Label, list[str]]]:
    """Each label's points (its support, times its discounts) and its reasons in the order they arrived."""
    points: dict[Label, float] = {}
    factors: dict[Label, float] = {}
    why: dict[Label, list[str]] = {}
    for sig in signals:
        if sig.kind is Kind.discount:
            factors[sig.label] = factors.get(sig.label, 1.0) * _weight(sig, weights)
            why.setdefault(sig.label, []).append(sig.reason)
            continue
        pts = signal_points(sig, weights)
        if pts == 0:
            continue
        points[sig.label] = points.get(sig.label, 0.0) + pts
        reasons = why.setdefault(sig.label, [])
        if sig.reason and sig.reason not in reasons:
            reasons.append(sig.reason)
    return {label: p * factors.get(label, 1.0) for label, p in points.items()}, why


def score_signals(signals: Iterable[Signal], weights: Weights = DEFAULT_WEIGHTS) -> list[RootCause]:
    """Ranked causes, primary first, at most `max_causes`, each with its reasons in the order they arrived."""
    final, why = _label_points(signals, weights)
    th = weights.thresholds
    probability = calibrate_top(label_probabilities(final, th["unexplained_points"], th["probability_temperature"]),
                                weights.confidence)
    order = sorted((p, -i, label) for i, (label, p) in enumerate(final.items()) if p > th["min_points"])
    out = []
    for pts, _, label in reversed(order[-int(th["max_causes"]):]):
        score = round(1.0 - math.exp(-pts / th["score_scale"]), SCORE_DECIMALS)
        out.append(RootCause(label=label.value, score=min(max(score, 0.0), 1.0), why=why.get(label, []),
                             probability=round(probability[label], SCORE_DECIMALS)))
    return out


def label_probabilities(points: dict[Label, float], null_points: float = 0.0, temperature: float = 1.0) -> dict[Label, float]:
    """P(label is the primary cause) = softmax of points / temperature over the labels with evidence and a null option
    ("none of these", `null_points`): the model evals/fit_weights.py fits, so its reliability on held-out folds is what
    the probability means, and one weak piece of evidence alone is never a certainty."""
    live = {label: p for label, p in points.items() if p > 0}
    if not live:
        return {label: 0.0 for label in points}
    top = max(max(live.values()), null_points)
    z = sum(math.exp((p - top) / temperature) for p in live.values()) + math.exp((null_points - top) / temperature)
    return {label: (math.exp((points[label] - top) / temperature) / z if label in live else 0.0) for label in points}


def _weight(signal: Signal, weights: Weights) -> float:
    """The table's weight of the signal's rule; a rule missing from the table raises (no silent zero)."""
    try:
        return weights.points[signal.name]
    except KeyError:
        raise KeyError(f"no weight for the rule {signal.name!r}: add it to tools/root_causes/weights.py") from None
