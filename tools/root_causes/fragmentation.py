"""Memory PyTorch reserved but did not allocate, against the request that failed: a fragmented cache."""

from __future__ import annotations

import math

from ..report import OOMReport
from ..units import format_bytes
from .scores import Scores


def unallocated_bytes(report: OOMReport) -> int | None:
    """Reserved but unallocated bytes, as printed or as reserved minus allocated."""
    unalloc = report.torch_reserved_unallocated_bytes
    if unalloc is None and report.torch_reserved_bytes is not None and report.torch_allocated_bytes is not None:
        unalloc = max(report.torch_reserved_bytes - report.torch_allocated_bytes, 0)
    return unalloc


def fragmentation(report: OOMReport, s: Scores) -> None:
    """Reserved-but-unallocated memory at least as large as the request: the cache is fragmented."""
    req = report.requested_bytes or 0
    total = report.gpu_total_bytes
    unalloc = unallocated_bytes(report)
    if unalloc and req and total:
        if unalloc >= req and unalloc >= 0.02 * total:
            pts = 3.5 + min(math.log2(unalloc / req), 4) / 2
            s.add("fragmentation", pts, f"{format_bytes(unalloc)} is reserved by PyTorch but unallocated, more than the "
                                        f"{format_bytes(req)} requested: the cache is fragmented (expandable_segments helps)")
        elif unalloc >= 0.5 * req and unalloc >= 0.03 * total:
            s.add("fragmentation", 1.0, f"{format_bytes(unalloc)} reserved but unallocated against a {format_bytes(req)} request")
