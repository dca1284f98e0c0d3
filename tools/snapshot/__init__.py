"""PyTorch memory snapshots, read safely and attributed to the calculator's components, reconciled with its
prediction, and compared across ranks (also from a multi-rank log).

    from ask_oom.tools.snapshot import load_snapshot, reconcile, render_markdown
    summary = load_snapshot(open("rank3.pickle", "rb").read(), name="rank3.pickle", rank=3)
    print(render_markdown(reconcile([summary], estimate)))

Every function raises only `InputError` (one line) on bad input; nothing in a snapshot is ever executed.
"""

from __future__ import annotations

from .attribution import SITE_RULES, AllocationSite, Attribution, ComponentHeld, attribute
from .log_ranks import rank_rows, ranks_from_log
from .ranks import IMBALANCE_SOURCES, RankRow, RankTable
from .reader import Snapshot, read_snapshot
from .reconcile import ComponentRow, RankComparison, Reconciliation, rank_table, reconcile
from .render import render_markdown, render_rank_table
from .safe_pickle import MAX_SNAPSHOT_BYTES, load_plain
from .summary import SnapshotSummary, summarize


def load_snapshot(data: bytes | str, *, name: str, rank: int | None = None, device: int | None = None,
                  requested_bytes: int | None = None, device_total_bytes: int | None = None) -> SnapshotSummary:
    """Read a snapshot file's contents (pickle or JSON) safely, attribute what it holds, and summarise it.
    `requested_bytes`/`device_total_bytes`: the failing request and GPU capacity when the caller knows them (the
    history's OOM action, when recorded, gives the request)."""
    snapshot = read_snapshot(load_plain(data, name=name), name=name)
    attribution = attribute(snapshot, device=device, requested_bytes=requested_bytes,
                            device_total_bytes=device_total_bytes)
    return summarize(snapshot, attribution, name=name, rank=rank)


__all__ = [
    "IMBALANCE_SOURCES", "MAX_SNAPSHOT_BYTES", "SITE_RULES", "AllocationSite", "Attribution", "ComponentHeld",
    "ComponentRow", "RankComparison", "RankRow", "RankTable", "Reconciliation", "Snapshot", "SnapshotSummary",
    "attribute", "load_plain", "load_snapshot", "rank_rows", "rank_table", "ranks_from_log", "read_snapshot",
    "reconcile", "render_markdown", "render_rank_table", "summarize",
]
