"""A per-rank table of memory at the OOM (from snapshots or from a log), the busiest rank, and an imbalance verdict.

Ranks more than IMBALANCE_SPREAD apart are imbalanced; the likely sources are checked from what the rows show
(per-component bytes when snapshots gave them) against IMBALANCE_SOURCES, kept as data.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..units import format_bytes

IMBALANCE_SPREAD = 0.10   # (max - min) / max above this is an imbalance

# (key, likely source, what to do): the keys are the checks in `likely_sources`.
IMBALANCE_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("weights_differ", "device_map or the pipeline stages split the layers unevenly: the model weights differ by rank",
     "balance the split (max_memory per GPU for device_map='auto', an even number of layers per stage)"),
    ("rank0_gather", "rank 0 gathers what the others do not (a full state dict on save, eval predictions or "
     "metrics, logging): rank 0 holds more while the other ranks are even",
     "gather on CPU or shard the save (FSDP SHARDED_STATE_DICT, ZeRO stage3_gather_16bit_weights_on_model_save=false)"),
    ("last_stage", "uneven pipeline stages: the last rank also holds the logits and the loss",
     "give the last stage fewer layers"),
    ("activations_differ", "uneven batches: the tokens reaching each rank differ (long samples, no length grouping "
     "or packing)", "cap max_seq_length, group by length, or pack"),
    ("unknown", "the ranks differ but the log does not say in what: record a memory snapshot on each rank",
     "torch.cuda.memory._record_memory_history(max_entries=100000), then _dump_snapshot on each rank"),
)
_SOURCES = {key: (text, fix) for key, text, fix in IMBALANCE_SOURCES}


class RankRow(BaseModel):
    """One rank's memory at its OOM (None where the source does not show it)."""

    rank: int
    allocated_bytes: int | None = None
    reserved_bytes: int | None = None
    requested_bytes: int | None = None
    free_bytes: int | None = None
    total_bytes: int | None = None
    top_component: str | None = None
    components: dict[str, int] = Field(default_factory=dict, description="held bytes per component (snapshots only)")
    source: str = Field(default="", description="the snapshot file, or the log line the numbers came from")


class LikelySource(BaseModel):
    key: str
    text: str
    fix: str


class RankTable(BaseModel):
    """Ranks side by side, the busiest one, and whether they are imbalanced."""

    rows: list[RankRow]
    measure: str = Field(description="the column ranks are compared on: allocated_bytes or reserved_bytes")
    busiest_rank: int
    spread: float = Field(description="(max - min) / max of the measure over the ranks")
    imbalanced: bool
    verdict: str
    likely_sources: list[LikelySource] = Field(default_factory=list)


def _spread(values: list[int]) -> float:
    top = max(values)
    return (top - min(values)) / top if top > 0 else 0.0


def likely_sources(rows: list[RankRow], busiest: int) -> list[LikelySource]:
    """The sources in IMBALANCE_SOURCES the rows support, most specific first ('unknown' when none can be told)."""
    keys: list[str] = []
    with_components = len(rows) >= 2 and all(r.components for r in rows)
    if with_components:
        if _spread([r.components.get("weights", 0) for r in rows]) > IMBALANCE_SPREAD:
            keys.append("weights_differ")
        last = max(rows, key=lambda r: r.rank)
        others = [r.components.get("logits_and_loss", 0) for r in rows if r is not last]
        last_logits = last.components.get("logits_and_loss", 0)
        if busiest == last.rank and last_logits > 0 and last_logits > 4 * max(others, default=0):
            keys.append("last_stage")
        acts = [sum(v for k, v in r.components.items() if k in ("activations", "attention_scores",
                                                                  "logits_and_loss")) for r in rows]
        if _spread(acts) > IMBALANCE_SPREAD and "weights_differ" not in keys and "last_stage" not in keys:
            keys.append("activations_differ")
    measured = [r for r in rows if _value(r) is not None]
    if busiest == 0 and len(measured) >= 2:
        rest = [_value(r) for r in measured if r.rank != 0]
        first = next(_value(r) for r in measured if r.rank == 0)
        if first > max(rest) * (1 + IMBALANCE_SPREAD) and (len(rest) < 2 or _spread(rest) <= IMBALANCE_SPREAD):
            keys.insert(0, "rank0_gather")
    if not keys:
        keys.append("unknown" if not with_components else "activations_differ")
    return [LikelySource(key=k, text=_SOURCES[k][0], fix=_SOURCES[k][1]) for k in keys]


def _value(row: RankRow) -> int | None:
    return row.allocated_bytes if row.allocated_bytes is not None else row.reserved_bytes


def build_rank_table(rows: list[RankRow]) -> RankTable | None:
    """The table for two or more ranks with a measured allocation; None otherwise (nothing to compare)."""
    rows = sorted(rows, key=lambda r: r.rank)
    measure = "allocated_bytes" if all(r.allocated_bytes is not None for r in rows) else "reserved_bytes"
    values = {r.rank: getattr(r, measure) for r in rows if getattr(r, measure) is not None}
    if len(values) < 2:
        return None
    busiest = max(values, key=lambda k: (values[k], -k))
    least = min(values, key=lambda k: (values[k], k))
    spread = _spread(list(values.values()))
    word = measure.removesuffix("_bytes")
    if spread > IMBALANCE_SPREAD:
        verdict = (f"imbalance: rank {busiest} holds {format_bytes(values[busiest])} {word} and rank {least} "
                   f"{format_bytes(values[least])}: a spread of {spread:.0%} of the busiest rank "
                   f"(over {IMBALANCE_SPREAD:.0%} is imbalance)")
        sources = likely_sources(rows, busiest)
    else:
        verdict = (f"balanced: the {len(values)} ranks are within {spread:.0%} of each other in {word} memory; "
                   f"rank {busiest} is the busiest ({format_bytes(values[busiest])})")
        sources = []
    return RankTable(rows=rows, measure=measure, busiest_rank=busiest, spread=round(spread, 4),
                     imbalanced=spread > IMBALANCE_SPREAD, verdict=verdict, likely_sources=sources)
