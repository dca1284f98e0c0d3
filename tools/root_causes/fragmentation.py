"""Memory PyTorch reserved but did not allocate, against the request that failed: a fragmented cache."""

from __future__ import annotations

import math

from ..labels import Label
from ..report import OOMReport
from ..units import format_bytes
from .signals import Signal, support
from .weights import THRESHOLDS, Thresholds


def unallocated_bytes(report: OOMReport) -> int | None:
    """Reserved but unallocated bytes, as printed or as reserved minus allocated."""
    unalloc = report.torch_reserved_unallocated_bytes
    if unalloc is None and report.torch_reserved_bytes is not None and report.torch_allocated_bytes is not None:
        unalloc = max(report.torch_reserved_bytes - report.torch_allocated_bytes, 0)
    return unalloc


def fragmentation(report: OOMReport, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """Reserved-but-unallocated memory at least as large as the request: the cache is fragmented."""
    req = report.requested_bytes or 0
    total = report.gpu_total_bytes
    unalloc = unallocated_bytes(report)
    if not (unalloc and req and total):
        return []
    if unalloc >= req and unalloc >= th["fragmented_min_gpu_share"] * total:
        reason = (f"{format_bytes(unalloc)} is reserved by PyTorch but unallocated, more than the "
                  f"{format_bytes(req)} requested: the cache is fragmented (expandable_segments helps)")
        # the excess counts in doublings of the request, up to a cap
        doublings = min(math.log2(unalloc / req), th["fragmented_excess_doublings_cap"])
        return [support(Label.fragmentation, "fragmented_cache", reason),
                support(Label.fragmentation, "fragmented_cache_excess", reason, doublings)]
    if unalloc >= th["partial_fragment_of_request"] * req and unalloc >= th["partial_fragment_min_gpu_share"] * total:
        return [support(Label.fragmentation, "fragmented_cache_partial",
                        f"{format_bytes(unalloc)} reserved but unallocated against a {format_bytes(req)} request")]
    return []
