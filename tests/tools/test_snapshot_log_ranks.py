"""Per-rank OOM numbers from a multi-rank log: the rank table, the busiest rank, imbalance; linear on odd input."""

from __future__ import annotations

import time

from ask_oom.tools.snapshot import rank_rows, ranks_from_log, render_rank_table

GiB = 1 << 30


def _msg(rank: int, alloc: float, unalloc: float, free: float, req: float = 2.0, prefix: bool = True) -> str:
    head = f"[rank{rank}]: " if prefix else ""
    return (f"{head}torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {req:.2f} GiB. GPU {rank} has a "
            f"total capacity of 79.15 GiB of which {free:.2f} GiB is free. Including non-PyTorch memory, this process "
            f"has 77.90 GiB memory in use. Of the allocated memory {alloc:.2f} GiB is allocated by PyTorch, and "
            f"{unalloc:.2f} GiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large "
            f"try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation "
            f"for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")


def _traceback(rank: int) -> list[str]:
    return [f"[rank{rank}]: Traceback (most recent call last):",
            f'[rank{rank}]:   File "/workspace/train.py", line 88, in <module>',
            f"[rank{rank}]:     trainer.train()"]


def test_four_rank_log():
    lines = ["{'loss': 1.93, 'grad_norm': 0.41, 'learning_rate': 2e-05, 'epoch': 0.1}"]
    numbers = {0: (60.1, 2.3, 1.2), 1: (61.0, 1.0, 1.1), 2: (59.8, 2.0, 1.3), 3: (74.1, 2.3, 1.2)}
    for r, (a, u, f) in numbers.items():
        lines += _traceback(r) + [_msg(r, a, u, f)]
    lines.append("E1023 10:00:00.000000 123 torch/distributed/elastic/multiprocessing/api.py:869] failed (exitcode: 1)")
    table = ranks_from_log("\n".join(lines))
    assert [r.rank for r in table.rows] == [0, 1, 2, 3]
    r3 = table.rows[3]
    assert r3.allocated_bytes == round(74.1 * GiB) and r3.reserved_bytes == round(74.1 * GiB) + round(2.3 * GiB)
    assert r3.requested_bytes == 2 * GiB and r3.free_bytes == round(1.2 * GiB) and r3.total_bytes == round(79.15 * GiB)
    assert table.busiest_rank == 3 and table.imbalanced and table.measure == "allocated_bytes"
    assert table.verdict.startswith("imbalance: rank 3 holds 74.10 GiB allocated and rank 2 59.80 GiB")
    assert table.likely_sources[0].key == "unknown"   # a log cannot tell which component differs
    md = "\n".join(render_rank_table(table))
    assert "| 3 (busiest) | 74.10 | 76.40 | 2.00 | 1.20 | – |" in md


def test_one_rank_is_none():
    log = "\n".join(_traceback(0) + [_msg(0, 70.0, 2.0, 1.0)])
    assert ranks_from_log(log) is None
    assert len(rank_rows(log)) == 1
    assert ranks_from_log(_msg(0, 70.0, 2.0, 1.0, prefix=False)) is None
    assert ranks_from_log("") is None and ranks_from_log("no error here\n" * 10) is None


def test_same_rank_printing_twice_keeps_the_first():
    log = "\n".join([_msg(1, 70.0, 1.0, 1.0), _msg(1, 10.0, 1.0, 1.0), _msg(0, 70.0, 1.0, 1.0)])
    rows = rank_rows(log)
    assert {r.rank: r.allocated_bytes for r in rows} == {0: 70 * GiB, 1: 70 * GiB}


def test_interleaved_and_wrapped_lines():
    """Two ranks' messages hard-wrapped at 100 columns, their lines interleaved: each rank's pieces join."""
    a = _msg(0, 40.0, 1.0, 30.0, prefix=False)
    b = _msg(1, 70.0, 3.0, 1.0, prefix=False)
    wa = [a[i:i + 100] for i in range(0, len(a), 100)]
    wb = [b[i:i + 100] for i in range(0, len(b), 100)]
    lines = []
    for i in range(max(len(wa), len(wb))):
        if i < len(wb):
            lines.append(f"[rank1]:{wb[i]}")
        if i < len(wa):
            lines.append(f"[rank0]:{wa[i]}")
    table = ranks_from_log("\r\n".join(lines).encode())
    rows = {r.rank: r for r in table.rows}
    assert rows[0].allocated_bytes == 40 * GiB and rows[0].reserved_bytes == 41 * GiB
    assert rows[1].allocated_bytes == 70 * GiB and rows[1].free_bytes == 1 * GiB
    assert table.busiest_rank == 1 and table.imbalanced


def test_rank_0_gather_from_a_log():
    log = "\n".join(_msg(r, 76.0 if r == 0 else 50.0, 1.0, 1.0) for r in range(4))
    table = ranks_from_log(log)
    assert table.busiest_rank == 0 and table.likely_sources[0].key == "rank0_gather"


def test_balanced_log():
    log = "\n".join(_msg(r, 70.0 + r * 0.5, 1.0, 1.0) for r in range(8))
    table = ranks_from_log(log)
    assert not table.imbalanced and table.busiest_rank == 7 and table.verdict.startswith("balanced: the 8 ranks")


def test_without_rank_prefixes_the_gpu_index_is_the_rank():
    log = "\n".join(_msg(r, 60.0 + 10 * r, 1.0, 1.0, prefix=False) for r in (0, 1))
    assert [r.rank for r in ranks_from_log(log).rows] == [0, 1]


def test_adversarial_input_is_linear():
    evil = ("Tried to allocate " * 200_000) + "\n" + ("[rank1]: CUDA out of memory. " * 100_000)
    t = time.perf_counter()
    ranks_from_log(evil)
    ranks_from_log("out of memory " + "9" * 1_000_000 + " GiB")
    assert time.perf_counter() - t < 20
