"""Held memory against the calculator's prediction, the finding naming the rank and component, the rank table."""

from __future__ import annotations

import re

from ask_oom.tools.memory.schema import MemoryBreakdown, MemoryComponent, MemoryEstimate
from ask_oom.tools.snapshot import load_snapshot, rank_table, reconcile, render_markdown

from .test_snapshot_builders import (GiB, MiB, UNKNOWN, WEIGHTS, build, dumps, llama_parts, llama_snapshot)


def _estimate(**over: int) -> MemoryEstimate:
    parts = {"weights": 4 * GiB, "gradients": 4 * GiB, "optimizer_states": 8 * GiB,
             "activations": 6 * GiB + 512 * MiB, "attention_scores": 512 * MiB, "logits_and_loss": 4 * GiB}
    parts.update(over)
    return MemoryEstimate(peak_bytes=sum(parts.values()), peak_phase="backward", n_params=2 * 10**9,
                          n_trainable=2 * 10**9,
                          breakdown=MemoryBreakdown(components=[MemoryComponent(name=k, bytes=v)
                                                                for k, v in parts.items()]))


def _ranks(extra: dict[int, int]) -> list:
    return [load_snapshot(dumps(llama_snapshot(extra_activations=extra.get(r, 0))), name=f"rank{r}.pickle", rank=r)
            for r in range(4)]


def test_four_ranks_rank_2_holds_extra_activations():
    summaries = _ranks({2: 5 * GiB})
    rec = reconcile(summaries, _estimate())
    assert rec.finding.startswith("rank 2 holds 11.50 GiB of activations where 6.50 GiB were predicted (+5.00 GiB")
    assert "batch or sequence" in rec.finding
    row = next(r for r in rec.comparisons[2].rows if r.component == "activations")
    assert row.difference_bytes == 5 * GiB and row.predicted_bytes == 6 * GiB + 512 * MiB
    assert rec.rank_table.busiest_rank == 2 and rec.rank_table.imbalanced
    assert rec.rank_table.likely_sources[0].key == "activations_differ"
    md = render_markdown(rec)
    assert "| component | predicted (GiB) | held (GiB) | difference (GiB) |" in md
    assert "| activations | 6.50 | 11.50 | +5.00 |" in md
    assert re.search(r"\| 2 \(busiest\) \| \d+\.\d\d \|", md)
    assert md.startswith("**Finding:** rank 2")


def test_relative_leader_is_named_when_it_differs():
    summaries = _ranks({})
    rec = reconcile(summaries, _estimate(attention_scores=256 * MiB, optimizer_states=5 * GiB))
    assert rec.finding.startswith("rank 0 holds 8.00 GiB of optimizer_states where 5.00 GiB were predicted")
    assert "relatively, rank 0's attention_scores differ most (+100%)" in rec.finding


def test_matching_prediction():
    rec = reconcile(_ranks({})[:1], _estimate())
    assert rec.finding.startswith("held memory matches the prediction")
    assert rec.rank_table is None


def test_rank_0_gather_is_named():
    summaries = _ranks({})
    gathered = build(llama_parts() + [(8 * GiB, UNKNOWN)], oom=(2 * GiB, 0, UNKNOWN))
    summaries[0] = load_snapshot(dumps(gathered), name="rank0.pickle", rank=0)
    table = rank_table(summaries)
    assert table.busiest_rank == 0 and table.imbalanced
    assert table.likely_sources[0].key == "rank0_gather"
    rec = reconcile(summaries, None)
    assert rec.finding.startswith("rank 0 reserves") and "imbalance" in rec.finding
    assert [n for n in rec.notes if "unattributed" in n] == [
        "rank 0: 8.00 GiB of 35.00 GiB held is unattributed, so its comparison is partial"]


def test_uneven_device_map_weights():
    summaries = [load_snapshot(dumps(build([(GiB, WEIGHTS)] * n)), name=f"gpu{i}", rank=i)
                 for i, n in enumerate([10, 6, 6, 6])]
    table = rank_table(summaries)
    assert table.imbalanced and table.busiest_rank == 0
    assert {s.key for s in table.likely_sources} >= {"weights_differ"}


def test_balanced_ranks():
    table = rank_table(_ranks({1: 256 * MiB}))
    assert not table.imbalanced and table.likely_sources == [] and table.verdict.startswith("balanced")


def test_without_frames_the_comparison_says_it_is_partial():
    s = load_snapshot(dumps(llama_snapshot(frames=False)), name="bare", rank=5)
    rec = reconcile([s], _estimate())
    assert any("rank 5" in n and "no allocation stacks" in n for n in rec.notes)
    assert rec.model_dump_json()
