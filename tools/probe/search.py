"""Find the largest micro-batch (or sequence length) that fits, in few trials.

Unlike halving from the start (accelerate's find_executable_batch_size), this brackets the boundary:
start from a guess (the calculator's prediction), grow geometrically until a failure or shrink until a
success, then bisect between the last success and the first failure. Pure logic: `fits` runs a trial.
"""

from __future__ import annotations

from collections.abc import Callable


def bracket_search(fits: Callable[[int], bool], start: int, *, lo: int = 1, hi: int = 1 << 20,
                   granularity: int = 1, max_trials: int = 24) -> tuple[int | None, list[tuple[int, bool]]]:
    """Largest value v in [lo, hi] (a multiple of `granularity`) with fits(v) True, assuming monotonicity.

    Returns (best or None if even lo fails, the trials in order as (value, fitted)).
    """
    def snap(v: float) -> int:
        return max(lo, min(hi, int(v) // granularity * granularity or granularity))

    trials: list[tuple[int, bool]] = []
    seen: dict[int, bool] = {}

    def trial(v: int) -> bool:
        if v not in seen:
            seen[v] = fits(v)
            trials.append((v, seen[v]))
        return seen[v]

    good: int | None = None
    bad: int | None = None
    v = snap(start)
    if trial(v):
        good = v
        while good < hi and len(trials) < max_trials:  # grow until the first failure
            nxt = snap(good * 2)
            if nxt == good:
                break
            if trial(nxt):
                good = nxt
            else:
                bad = nxt
                break
        if bad is None:
            return good, trials
    else:
        bad = v
        while bad > lo and len(trials) < max_trials:  # shrink until the first success
            nxt = snap(bad // 2)
            if nxt == bad:
                break
            if trial(nxt):
                good = nxt
                break
            bad = nxt
        if good is None:
            return None, trials
    while bad - good > granularity and len(trials) < max_trials:  # bisect the bracket (good, bad)
        mid = snap((good + bad) // 2)
        if mid in (good, bad):
            break
        if trial(mid):
            good = mid
        else:
            bad = mid
    return good, trials
