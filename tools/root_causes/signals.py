"""One piece of evidence as data: which rule fired, for which label, with what measured value and why.

Evidence families return lists of `Signal`s and never score them: the scorer (scoring.py) looks each signal's
`name` up in the weights table (weights.py), so the rules and their weights can be read, tested and fitted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..labels import Label


class Kind(str, Enum):
    """Support adds weight x value points to the label; a discount multiplies the label's points by its weight."""

    support = "support"
    discount = "discount"


@dataclass(frozen=True)
class Signal:
    """Evidence for (or against) one label: `name` is the rule, its key in the weights table; `value` the measured
    quantity the weight scales (1.0 for a rule that either fires or not); `reason` the sentence, numbers included."""

    label: Label
    name: str
    value: float = 1.0
    reason: str = ""
    kind: Kind = Kind.support

    def __post_init__(self) -> None:
        # A label given as text must be in the vocabulary: a misspelling raises ValueError instead of vanishing.
        object.__setattr__(self, "label", Label(self.label))


def support(label: Label | str, name: str, reason: str, value: float = 1.0) -> Signal:
    """Evidence for `label`: the rule `name` fired with `value` (points = weight[name] x value)."""
    return Signal(label=Label(label), name=name, value=value, reason=reason, kind=Kind.support)


def discount(label: Label | str, name: str, reason: str) -> Signal:
    """Evidence against `label`: its points, wherever they come from, count weight[name] times."""
    return Signal(label=Label(label), name=name, reason=reason, kind=Kind.discount)
