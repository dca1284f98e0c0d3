"""The score sheet of a ranking: points and reasons per label, turned into ranked RootCauses.

Every evidence family adds to one sheet; none decides alone, the sum does (score = 1 - exp(-points / 4))."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..labels import ROOT_CAUSES, RootCause

# Points → score in [0, 1): score = 1 - exp(-points / _SCALE); ~6 points is a confident 0.78.
_SCALE = 4.0
_MAX_CAUSES = 6


@dataclass
class Scores:
    """Accumulates points and reasons per label (keeps the order evidence arrived in)."""

    points: dict[str, float] = field(default_factory=dict)
    why: dict[str, list[str]] = field(default_factory=dict)
    explained: bool = False  # the failing allocation matched a tensor of the setup
    discounts: dict[str, float] = field(default_factory=dict)

    def discount(self, label: str, factor: float, reason: str) -> None:
        """Evidence against a label: its points, whenever they arrive, count `factor` times (the reason is kept)."""
        self.discounts[label] = self.discounts.get(label, 1.0) * factor
        self.why.setdefault(label, []).append(reason)

    def add(self, label: str, pts: float, reason: str) -> None:
        if label not in ROOT_CAUSES or pts == 0:
            return
        self.points[label] = self.points.get(label, 0.0) + pts
        reasons = self.why.setdefault(label, [])
        if reason and reason not in reasons:
            reasons.append(reason)

    def ranked(self, limit: int = _MAX_CAUSES) -> list[RootCause]:
        points = {lab: p * self.discounts.get(lab, 1.0) for lab, p in self.points.items()}
        order = sorted((p, -i, lab) for i, (lab, p) in enumerate(points.items()) if p > 0.25)
        out = []
        for pts, _, label in reversed(order[-limit:]):
            score = round(1.0 - math.exp(-pts / _SCALE), 3)
            out.append(RootCause(label=label, score=min(max(score, 0.0), 1.0), why=self.why.get(label, [])))
        return out
