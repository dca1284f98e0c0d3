"""Root-cause ranking of one OOM report: one module per evidence family, combined on one score sheet.

Public API: `rank_root_causes(report, setup, estimate, hits, trend=None, cues=None) -> list[RootCause]` and
`tensor_candidates(setup, estimate)` (the one-piece tensors a requested size is matched against).
"""

from .ranking import rank_root_causes
from .tensors import TensorCandidate, tensor_candidates

__all__ = ["TensorCandidate", "rank_root_causes", "tensor_candidates"]
