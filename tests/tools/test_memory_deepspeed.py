"""DeepSpeed's model-state estimators reproduced exactly: the numbers quoted in issue 4 for Qwen2.5-32B."""

from __future__ import annotations

import pytest

from ask_oom.tools.memory import deepspeed_estimate, resolve_model
from ask_oom.tools.units import GiB


@pytest.fixture
def qwen32b():
    return resolve_model("Qwen/Qwen2.5-32B-Instruct")


def test_counts_like_automodel(qwen32b):
    est = deepspeed_estimate(qwen32b, stage=3)
    assert est.total_params == 31_985_308_672  # without lm_head
    assert est.largest_layer_params == 152064 * 5120  # embed_tokens


def test_zero3_numbers(qwen32b):
    assert round(deepspeed_estimate(qwen32b, stage=3).selected.gpu_bytes / GiB, 2) == 539.10
    full = deepspeed_estimate(qwen32b, stage=3, offload_optimizer=True, offload_param=True).selected
    assert (round(full.cpu_bytes / GiB, 2), round(full.gpu_bytes / GiB, 2)) == (804.29, 2.90)
    opt_only = deepspeed_estimate(qwen32b, stage=3, offload_optimizer=True).selected
    assert round(opt_only.gpu_bytes / GiB, 2) == 62.48


def test_zero2_numbers(qwen32b):
    est = deepspeed_estimate(qwen32b, stage=2, offload_optimizer=True)
    assert round(est.selected.cpu_bytes / GiB, 2) == 714.93
    assert "714.93GB" in est.table()


def test_multi_gpu_formula():
    # ZeRO-2 without offload: 4 B/param + 16 B/param / total GPUs (stage_1_and_2.py)
    est = deepspeed_estimate(1_000_000_000, stage=2, num_gpus_per_node=8, num_nodes=2)
    assert est.selected.gpu_bytes == 4 * 10**9 + int(16 * 10**9 / 16)
    assert len(deepspeed_estimate(10**9, largest_layer_params=10**8, stage=3).options) == 6
