"""What the CPU allocator held while a function ran: the memory tests' measurement of a real training step."""

from __future__ import annotations


def allocator_peak(fn) -> int:
    """Highest net bytes the CPU allocator held while fn ran (allocations minus frees, in time order)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak
