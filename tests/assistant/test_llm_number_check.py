"""The grounding check: every number in an LLM answer must match a tool output (with unit tolerance)."""

from __future__ import annotations

import pytest

from ask_oom.assistant.number_check import quantities, unmatched_numbers

GIB = 2**30
TOOLS = [
    {"peak_gib": 15.98, "budget_gib": 70.86, "fits": True, "max_micro_batch": 6, "components_gib": {"weights": 31.5}},
    "CUDA out of memory. Tried to allocate 16.00 GiB. GPU 3 has a total capacity of 94.50 GiB of which 9.71 GiB is free.",
    {"requested_bytes": 16 * GIB, "seq_len": 16384, "score": 0.6912},
]


@pytest.mark.parametrize("answer", [
    "The peak is 15.98 GiB of 70.86 GiB usable.",
    "The peak is about 16 GiB.",                   # rounded to what is written
    "It asked for 16384 MiB (16.00 GiB).",          # same size, other unit
    "16 GB were requested",                         # GB read as GiB (PyTorch prints binary units)
    "cutoff_len 16384 with up to 6 samples per GPU; score 0.69.",
    "1. use ZeRO-3 on your A100 with bf16\n2. keep Qwen2.5-7B",  # list markers and names are not quantities
    "Weights take 31.5 GiB; the GPU has 94.5 GiB.",
])
def test_grounded_numbers_pass(answer):
    assert unmatched_numbers(answer, TOOLS) == []


@pytest.mark.parametrize("answer, bad", [
    ("The peak is 12.34 GiB.", ["12.34 GiB"]),
    ("It fits at micro-batch 7.", ["7"]),
    ("16.4 GiB were requested", ["16.4 GiB"]),     # written with more precision than the tool's 16.00
    ("cutoff_len 8192 fits", ["8192"]),
    ("9.71 GiB free but 3 GiB needed", ["3 GiB"]),  # a size must match a size, not a bare count
])
def test_invented_numbers_are_caught(answer, bad):
    assert unmatched_numbers(answer, TOOLS) == bad


def test_quantities_read_units_and_thousands():
    qs = quantities("1,024 MiB and 2.5GB and 7")
    assert [(q.value, q.unit) for q in qs] == [(1024.0, "MiB"), (2.5, "GB"), (7.0, None)]
