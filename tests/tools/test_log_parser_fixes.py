"""Fixes found by the diagnosis stage: an OOM message without a GPU index, llama.cpp/ggml allocation failures,
phases read from frames and their source lines, paths that are not models, PEFT's parameter counts, and random
text that must stay not_oom. The matching corpus logs live in tests/fixtures/logs/."""

from __future__ import annotations

import pytest

from ask_oom.tools.log_parser import parse_log

GiB, MiB = 1 << 30, 1 << 20


# -- 1. "GPU  has a total capacity" (no index) ---------------------------------------------------------------
def test_new_format_without_gpu_index_keeps_every_number():
    r = parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 512.00 MiB. GPU  has a total "
                  "capacity of 15.77 GiB of which 100.12 MiB is free. Process 4242 has 1.50 GiB memory in use. "
                  "Including non-PyTorch memory, this process has 14.17 GiB memory in use. Of the allocated memory "
                  "13.01 GiB is allocated by PyTorch, and 0.90 GiB is reserved by PyTorch but unallocated. If reserved "
                  "but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")
    assert r.kind == "cuda_oom" and r.gpu_index is None
    assert r.requested_bytes == 512 * MiB
    assert r.gpu_total_bytes == round(15.77 * GiB) and r.gpu_free_bytes == round(100.12 * MiB)
    assert r.process_used_bytes == round(14.17 * GiB) and r.torch_allocated_bytes == round(13.01 * GiB)
    assert r.torch_reserved_unallocated_bytes == round(0.90 * GiB)
    assert [(p.pid, p.bytes) for p in r.other_processes] == [(4242, round(1.5 * GiB))]


def test_new_format_with_index_still_reads_it():
    r = parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 3 has a total "
                  "capacity of 79.15 GiB of which 3.06 MiB is free.")
    assert r.gpu_index == 3 and r.gpu_total_bytes == round(79.15 * GiB)
