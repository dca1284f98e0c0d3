"""What the failing run itself held: memory snapshots reconciled with the calculator, and per-rank tables.

A component held well beyond its prediction on the rank that ran out is direct evidence for the cause that makes
that component (the held bytes are measured, not modelled); an imbalance between ranks is evidence for the source
the rank table names. The component → label table is data, like the weights.
"""

from __future__ import annotations

from ..labels import Label
from ..snapshot import RankTable, Reconciliation
from ..units import format_bytes
from .signals import Signal, support

# A component held beyond its prediction → the cause that makes it (root-causes.md's definitions).
COMPONENT_CAUSES: dict[str, Label] = {
    "eval_accumulated": Label.eval_accumulation,
    "logits_and_loss": Label.logits_large_vocab,
    "attention_scores": Label.eager_attention,
    "kv_cache": Label.generation_kv_cache,
    "vision_activations": Label.vision_tokens,
    "optimizer_states": Label.full_ft_model_states,
    "master_weights": Label.full_ft_model_states,
    "gradients": Label.full_ft_model_states,
    "zero3_gathered_params": Label.zero_stage_insufficient,
    "weights": Label.weights_exceed_gpu,
    "fragmentation": Label.fragmentation,
    "unattributed": Label.memory_growth,
}
# Which imbalance source of the rank table (tools/snapshot/ranks.IMBALANCE_SOURCES) is which cause.
IMBALANCE_CAUSES: dict[str, Label] = {
    "weights_differ": Label.multi_gpu_imbalance,
    "rank0_gather": Label.multi_gpu_imbalance,
    "last_stage": Label.multi_gpu_imbalance,
    "activations_differ": Label.seq_len_too_long,
}


def held_memory(reconciliation: Reconciliation | None, ranks: RankTable | None) -> list[Signal]:
    """The largest excess of held over predicted memory on each snapshot's rank (its share of what that rank held
    is the value), and the imbalance sources of the rank table (from the snapshots, else from the log)."""
    out: list[Signal] = []
    if reconciliation is not None:
        for comp in reconciliation.comparisons:
            over = [r for r in comp.rows if r.difference_bytes is not None and r.difference_bytes > 0
                    and r.component in COMPONENT_CAUSES]
            if not over or not comp.held_total_bytes:
                continue
            top = max(over, key=lambda r: r.difference_bytes)
            share = top.difference_bytes / comp.held_total_bytes
            who = f"rank {comp.rank}" if comp.rank is not None else comp.name
            out.append(support(COMPONENT_CAUSES[top.component], "snapshot_excess",
                               f"{who}'s snapshot holds {format_bytes(top.held_bytes)} of {top.component}, "
                               f"{format_bytes(top.difference_bytes)} more than the calculator predicts "
                               f"({share:.0%} of what the rank held)", share))
        ranks = reconciliation.rank_table or ranks
    if ranks is not None and ranks.imbalanced:
        for source in ranks.likely_sources:
            label = IMBALANCE_CAUSES.get(source.key)
            if label is not None:
                out.append(support(label, "ranks_imbalanced", f"{ranks.verdict}: {source.text}"))
    return out
