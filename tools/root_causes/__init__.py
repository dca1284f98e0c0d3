"""Root-cause ranking of one OOM report: one module per evidence family, each a pure function from its inputs to
`Signal`s; one scorer turns the signals into ranked causes with the named weights of weights.py.

Public API: `rank_root_causes(report, setup, estimate, hits, trend=None, cues=None, weights=None) -> list[RootCause]`
(report None: no log, causes from the calculator's breakdown), `collect_signals(...)` and `score_signals(signals,
weights)` (the two halves of it), `request_explained(report, setup, estimate)`, `Weights` / `DEFAULT_WEIGHTS`, and
`tensor_candidates(setup, estimate)` (the one-piece tensors a requested size is matched against).
"""

from .ranking import collect_signals, rank_root_causes
from .request_size import request_explained
from .scoring import score_signals
from .signals import Kind, Signal
from .tensors import TensorCandidate, tensor_candidates
from .weights import DEFAULT_WEIGHTS, THRESHOLDS, WEIGHTS, Weights

__all__ = ["DEFAULT_WEIGHTS", "THRESHOLDS", "WEIGHTS", "Kind", "Signal", "TensorCandidate", "Weights", "collect_signals",
           "rank_root_causes", "request_explained", "score_signals", "tensor_candidates"]
