"""Memory the failing run held (snapshots, per-rank tables) as evidence for the cause that makes it."""

from __future__ import annotations

import pickle

from ask_oom.tools.labels import Label
from ask_oom.tools.memory.schema import MemoryBreakdown, MemoryComponent, MemoryEstimate
from ask_oom.tools.root_causes.held import COMPONENT_CAUSES, IMBALANCE_CAUSES, held_memory
from ask_oom.tools.snapshot import IMBALANCE_SOURCES, load_snapshot, ranks_from_log, reconcile
from ask_oom.tools.memory.schema import COMPONENTS

from .test_snapshot_builders import ALLOC_CPP, SP, WEIGHTS, build, fr
from .test_snapshot_log_ranks import _msg

GiB = 1 << 30


def _estimate(**parts: float) -> MemoryEstimate:
    comps = [MemoryComponent(name=k, bytes=int(v * GiB)) for k, v in parts.items()]
    total = sum(c.bytes for c in comps)
    return MemoryEstimate(peak_bytes=total, peak_phase="evaluation", breakdown=MemoryBreakdown(components=comps),
                          n_params=1, n_trainable=1)


CONCAT = ALLOC_CPP + [fr(f"{SP}/transformers/trainer_pt_utils.py", "nested_concat", 120),
                      fr(f"{SP}/transformers/trainer.py", "evaluation_loop", 4200)]


def test_the_tables_name_real_components_labels_and_sources():
    assert set(COMPONENT_CAUSES) <= set(COMPONENTS) | {"fragmentation", "unattributed"}
    assert all(isinstance(v, Label) for v in [*COMPONENT_CAUSES.values(), *IMBALANCE_CAUSES.values()])
    assert set(IMBALANCE_CAUSES) <= {key for key, _, _ in IMBALANCE_SOURCES}


def test_predictions_kept_in_evaluation_support_eval_accumulation_with_the_bytes():
    snap = load_snapshot(pickle.dumps(build([(4 * GiB, WEIGHTS), (20 * GiB, CONCAT)], oom=(GiB, GiB // 4, CONCAT))),
                         name="rank0.pickle", rank=0)
    rec = reconcile([snap], _estimate(weights=4.0, activations=1.0))
    (signal,) = held_memory(rec, None)
    assert signal.label == Label.eval_accumulation and signal.name == "snapshot_excess"
    assert "20.00 GiB of eval_accumulated" in signal.reason
    assert abs(signal.value - 20 / (24 + snap.fragmentation_bytes / GiB)) < 0.01   # its share of the rank's memory


def test_held_memory_that_matches_the_prediction_is_no_evidence():
    snap = load_snapshot(pickle.dumps(build([(4 * GiB, WEIGHTS)])), name="rank0.pickle", rank=0)
    assert held_memory(reconcile([snap], _estimate(weights=4.0)), None) == []
    assert held_memory(None, None) == []


def test_rank_zero_gathering_in_a_log_supports_an_imbalance():
    log = "\n".join(_msg(r, a, 1.0, 1.0) for r, a in ((0, 74.0), (1, 52.0), (2, 52.2), (3, 51.9))) + "\n"
    signals = held_memory(None, ranks_from_log(log))
    assert [s.label for s in signals] == [Label.multi_gpu_imbalance] and signals[0].name == "ranks_imbalanced"
    balanced = "\n".join(_msg(r, 60.0 + r * 0.1, 1.0, 1.0) for r in range(4)) + "\n"
    assert held_memory(None, ranks_from_log(balanced)) == []
