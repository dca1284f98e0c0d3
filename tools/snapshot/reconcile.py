"""Held memory (from snapshots) against the calculator's prediction, component by component, and across ranks.

The finding names the rank and component whose held bytes differ most from the prediction, with the likely reason
(from REASONS, kept as data); the rank table compares ranks with each other.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..memory.schema import COMPONENTS, MemoryEstimate
from ..units import GiB, MiB, format_bytes
from .attribution import FRAGMENTATION, UNATTRIBUTED
from .ranks import RankRow, RankTable, build_rank_table
from .summary import SnapshotSummary

MIN_DIFFERENCE = 256 * MiB     # smaller differences are noise (allocator rounding, workspaces)
MATCH_FRACTION = 0.05          # all differences under this fraction of the prediction: held matches predicted
UNATTRIBUTED_WARN = 0.20       # unattributed above this fraction of held: the comparison is partial

# component -> (why a rank holds more than predicted, why it holds less)
REASONS: dict[str, tuple[str, str]] = {
    "weights": ("more of the model sits on that rank than assumed (an uneven device_map split, weights not sharded, "
                "or a second copy such as an unquantized or reference model)",
                "the weights are sharded, quantized or offloaded more than the calculator assumed"),
    "gradients": ("more parameters are trainable than assumed, or gradients are not sharded (ZeRO-2/FSDP) as "
                  "configured", "fewer parameters are trainable, or gradients are sharded or freed early"),
    "optimizer_states": ("the optimizer states are not sharded or offloaded as assumed, or a different optimizer "
                         "(fp32 AdamW instead of 8-bit) runs", "the optimizer is sharded, offloaded or 8-bit"),
    "master_weights": ("fp32 master copies exist that the calculator did not expect (mixed precision with fp32 "
                       "masters, ZeRO not sharding them)", "no fp32 master copies are kept"),
    "activations": ("the batch or sequence reaching that rank is larger than configured, or activation "
                    "checkpointing is off", "activation checkpointing or a shorter batch keeps fewer activations"),
    "attention_scores": ("attention materialises its scores (eager attention instead of SDPA/flash) or the "
                         "sequence is longer than configured", "a fused attention kernel keeps no scores"),
    "logits_and_loss": ("the logits are larger than assumed: a longer sequence or batch, a larger vocabulary, or an "
                        "fp32 upcast of the whole logits", "the loss is computed in chunks or on fewer tokens"),
    "kv_cache": ("the KV cache is longer or wider than configured (max_new_tokens, num_beams, batch)",
                 "the KV cache is shorter than configured"),
    "zero3_gathered_params": ("more parameters are gathered at once than assumed (stage3_max_live_parameters, "
                              "prefetch bucket)", "fewer parameters are gathered at once"),
    "ddp_gradient_buckets": ("DDP's gradient buckets are larger than assumed (bucket_cap_mb)", "smaller buckets"),
    "optimizer_temporaries": ("the optimizer step's temporaries are large (foreach kernels over big groups)",
                              "the optimizer step runs fused or per parameter"),
    "cuda_workspace": ("cuBLAS/cuDNN workspaces are larger than assumed", "smaller workspaces"),
    "eval_accumulated": ("the evaluation loop keeps every batch's predictions on the GPU: set eval_accumulation_steps "
                         "(moves them to the host), or prediction_loss_only when only the loss is needed",
                         "fewer predictions are kept on the GPU"),
    "vision_activations": ("the vision tower sees more or larger images than configured (image_max_pixels, images "
                           "per sample)", "fewer or smaller images"),
    FRAGMENTATION: ("the allocator holds reserved memory no tensor uses (fragmentation): set "
                    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True", "little fragmentation"),
}
_DEFAULT_REASON = ("that rank holds more of it than the calculator assumed", "that rank holds less than assumed")


class ComponentRow(BaseModel):
    """One component: predicted by the calculator (None: not predicted), held in the snapshot, and the difference."""

    component: str
    predicted_bytes: int | None
    held_bytes: int
    difference_bytes: int | None = Field(description="held - predicted (None when nothing was predicted)")


class RankComparison(BaseModel):
    """One snapshot's components against the prediction."""

    rank: int | None
    name: str
    at: str
    rows: list[ComponentRow]
    predicted_total_bytes: int | None
    held_total_bytes: int


class Reconciliation(BaseModel):
    """Held against predicted for every snapshot, the finding, and the rank table when there are several ranks."""

    comparisons: list[RankComparison]
    finding: str | None = None
    rank_table: RankTable | None = None
    predicted_peak_bytes: int | None = None
    notes: list[str] = Field(default_factory=list)


def _label(s: SnapshotSummary) -> str:
    return f"rank {s.rank}" if s.rank is not None else f"snapshot {s.name}"


def compare(summary: SnapshotSummary, estimate: MemoryEstimate | None) -> RankComparison:
    """The component table of one snapshot (predicted None everywhere without an estimate)."""
    predicted: dict[str, int] = estimate.breakdown.as_dict() if estimate is not None else {}
    names = [c for c in COMPONENTS if c in predicted or summary.held(c) > 0]
    names += sorted(n for n in {*predicted, *(c.name for c in summary.components)}
                    if n not in COMPONENTS and n not in (FRAGMENTATION, UNATTRIBUTED))
    names = [n for n in names if n != "allocator_reserve"]
    rows = []
    for n in names:
        pred = estimate.breakdown.get(n) if estimate is not None else None
        held = summary.held(n)
        rows.append(ComponentRow(component=n, predicted_bytes=pred, held_bytes=held,
                                 difference_bytes=None if pred is None else held - pred))
    for n in (UNATTRIBUTED, FRAGMENTATION):
        pred = None
        if n == FRAGMENTATION and estimate is not None and "allocator_reserve" in predicted:
            pred = estimate.breakdown.get("allocator_reserve")
        rows.append(ComponentRow(component=n, predicted_bytes=pred, held_bytes=summary.held(n),
                                 difference_bytes=None if pred is None else summary.held(n) - pred))
    return RankComparison(rank=summary.rank, name=summary.name, at=summary.at, rows=rows,
                          predicted_total_bytes=estimate.peak_bytes if estimate is not None else None,
                          held_total_bytes=summary.reserved_bytes)


def _pct(diff: int, pred: int) -> str:
    return f", {diff / pred:+.0%}" if pred > 0 else ""


def _finding(summaries: list[SnapshotSummary], comparisons: list[RankComparison]) -> str | None:
    """The rank and component that differ most from the prediction. A device ran out: what it held beyond the
    prediction explains that first (the largest excess), and a component held far below its prediction (the
    calculator sized a worse step than the one that ran) comes second; the relative leader is added when it is
    another one."""
    over = under = best_rel = None
    compared = False
    for s, comp in zip(summaries, comparisons):
        for row in comp.rows:
            if row.difference_bytes is None or row.component in (UNATTRIBUTED, FRAGMENTATION):
                continue
            compared = True
            key = abs(row.difference_bytes)
            if row.difference_bytes > 0 and (over is None or key > over[0]):
                over = (key, s, row)
            if row.difference_bytes < 0 and (under is None or key > under[0]):
                under = (key, s, row)
            if row.predicted_bytes and row.predicted_bytes >= MIN_DIFFERENCE and key >= MIN_DIFFERENCE:
                rel = key / row.predicted_bytes
                if best_rel is None or rel > best_rel[0]:
                    best_rel = (rel, s, row)
    total_pred = comparisons[0].predicted_total_bytes or 0 if comparisons else 0
    threshold = max(MIN_DIFFERENCE, MATCH_FRACTION * total_pred)
    leading = [c for c in (over, under) if c is not None and c[0] >= threshold]
    if not leading:
        if not compared:
            return None
        return (f"held memory matches the prediction: no component differs by more than "
                f"{format_bytes(threshold)} on any rank")
    text = "; ".join(_difference(s, row) for _, s, row in leading)
    if best_rel is not None and all(best_rel[1] is not s or best_rel[2].component != row.component
                                    for _, s, row in leading):
        _, s2, r2 = best_rel
        text += (f"; relatively, {_label(s2)}'s {r2.component} differ most "
                 f"({r2.difference_bytes / r2.predicted_bytes:+.0%})")
    return text


def _difference(s: SnapshotSummary, row: ComponentRow) -> str:
    """One component's difference on one rank, in words, with its likely reason."""
    more, less = REASONS.get(row.component, _DEFAULT_REASON)
    diff, pred = row.difference_bytes or 0, row.predicted_bytes or 0
    what = f"{format_bytes(pred)} were predicted" if pred else "none was predicted"
    return (f"{_label(s)} holds {format_bytes(row.held_bytes)} of {row.component} where {what} "
            f"({'+' if diff >= 0 else '-'}{format_bytes(abs(diff))}{_pct(diff, pred)}): {more if diff > 0 else less}")


def _finding_without_estimate(summaries: list[SnapshotSummary], table: RankTable | None) -> str | None:
    if not summaries:
        return None
    s = max(summaries, key=lambda x: x.reserved_bytes)
    top = s.top_component()
    if top is None:
        return None
    text = (f"{_label(s)} reserves {format_bytes(s.reserved_bytes)}; {top} holds the most "
            f"({format_bytes(s.held(top))})")
    if s.requested_bytes:
        text += f"; the failing request was {format_bytes(s.requested_bytes)}"
    if table is not None and table.imbalanced:
        text += f"; {table.verdict}"
    return text


def _row(s: SnapshotSummary, order: int) -> RankRow:
    return RankRow(rank=s.rank if s.rank is not None else order, allocated_bytes=s.allocated_bytes,
                   reserved_bytes=s.reserved_bytes, requested_bytes=s.requested_bytes,
                   free_bytes=s.device_free_bytes, total_bytes=s.device_total_bytes, top_component=s.top_component(),
                   components={c.name: c.bytes for c in s.components}, source=s.name)


def rank_table(summaries: list[SnapshotSummary]) -> RankTable | None:
    """Ranks side by side (a rank-less snapshot takes its position in the list); None for fewer than two."""
    if len(summaries) < 2:
        return None
    return build_rank_table([_row(s, i) for i, s in enumerate(summaries)])


def reconcile(summaries: list[SnapshotSummary], estimate: MemoryEstimate | None = None) -> Reconciliation:
    """Every snapshot against the prediction, the most telling difference, and the rank table."""
    comparisons = [compare(s, estimate) for s in summaries]
    table = rank_table(summaries)
    notes = []
    for s in summaries:
        held = s.held_bytes or 1
        if s.held(UNATTRIBUTED) > UNATTRIBUTED_WARN * held:
            notes.append(f"{_label(s)}: {format_bytes(s.held(UNATTRIBUTED))} of {format_bytes(s.held_bytes)} held "
                         "is unattributed, so its comparison is partial"
                         + ("" if s.frames_recorded else " (no allocation stacks were recorded)"))
        if s.reserved_bytes and s.fragmentation_bytes > 0.15 * s.reserved_bytes and s.fragmentation_bytes >= GiB:
            notes.append(f"{_label(s)}: {format_bytes(s.fragmentation_bytes)} reserved but unused (fragmentation): "
                         "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True returns most of it")
    finding = _finding(summaries, comparisons) if estimate is not None else _finding_without_estimate(summaries, table)
    return Reconciliation(comparisons=comparisons, finding=finding, rank_table=table,
                          predicted_peak_bytes=estimate.peak_bytes if estimate is not None else None, notes=notes)
