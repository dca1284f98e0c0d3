"""Apple silicon and mlx_lm.lora: its YAML read with its own defaults, a Mac's unified memory as the GPU budget, and
fixes written in the keys mlx_lm accepts (never DeepSpeed, bitsandbytes or flash-attn, which MLX does not have)."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from ask_oom.tools.configs import Constraints, apply_config_to_setup, load_config, plan_fixes
from ask_oom.tools.described_oom import described_oom
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.labels import RootCause
from ask_oom.tools.training_setup import TrainingSetup
from ask_oom.tools.units import GiB

MLX_YAML = """\
model: "meta-llama/Meta-Llama-3.1-8B-Instruct"
train: true
data: "fine_tuning/"
lora_layers: 16
batch_size: 4
iters: 2573
max_seq_length: 8192
grad_checkpoint: false
lora_parameters:
  keys: ["self_attn.q_proj", "self_attn.v_proj"]
  rank: 16
  scale: 0.5
"""


def test_mlx_lm_yaml_maps_its_keys_and_defaults():
    doc = load_config(MLX_YAML, "lora_config.yaml")
    assert doc.framework == "mlx"
    s = apply_config_to_setup(doc, TrainingSetup())
    assert s.framework == "mlx" and s.method == "lora" and s.lora_rank == 16 and s.lora_targets == ["q_proj", "v_proj"]
    assert s.micro_batch == 4 and s.seq_len == 8192 and s.gradient_checkpointing is False
    assert s.provenance["gradient_checkpointing"].detail == "lora_config.yaml: grad_checkpoint"
    d = apply_config_to_setup(load_config('model: "mlx-community/Mistral-7B-v0.1"\nlora_layers: 8\n', "c.yaml"), TrainingSetup())
    assert (d.micro_batch, d.seq_len, d.gradient_checkpointing, d.method) == (4, 2048, False, "lora")
    assert d.provenance["seq_len"].origin == "default"


@pytest.mark.parametrize("name, total", [("Apple M3 Max, 128 GB unified memory", 128), ("MacBook Pro M1 Max 64GB", 64),
                                         ("M2 Ultra 192GB", 192)])
def test_a_mac_is_three_quarters_of_its_unified_memory(name, total):
    gpu = lookup_gpu(name)
    assert gpu is not None and gpu.vendor == "apple" and gpu.memory_bytes == int(total * 0.75 * GiB)


def test_a_mac_without_its_memory_size_is_unknown():
    assert lookup_gpu("M3 Max") is None   # the same chip ships with 36 to 128 GB: ask, do not guess


def test_mlx_fix_turns_on_grad_checkpoint_in_the_users_yaml_and_fits():
    doc = load_config(MLX_YAML, "lora_config.yaml")
    setup = apply_config_to_setup(doc, TrainingSetup()).model_copy(update={"gpu": lookup_gpu("M3 Max 128GB")})
    causes = [RootCause(label="no_gradient_checkpointing", score=0.8), RootCause(label="batch_too_large", score=0.7)]
    plan = plan_fixes(setup, doc, causes, Constraints())
    assert plan.fits
    keys = {c.key for c in plan.changes if c.key}
    assert "grad_checkpoint" in keys and keys <= {"grad_checkpoint", "batch_size", "grad_accumulation_steps", "max_seq_length"}
    fixed = YAML(typ="safe").load(plan.fixed_config)
    assert fixed["grad_checkpoint"] is True and fixed["lora_parameters"]["rank"] == 16   # the rest is untouched
    assert "deepspeed" not in plan.fixed_config and "bits" not in plan.fixed_config


def test_memory_that_grows_until_a_mac_crashes_is_a_device_memory_failure():
    d = described_oom("the memory consumption increases from 90 GB to over 200 GB after approx. 60 iterations. "
                      "Because of this my M3 Max Macbook with 128GB memory crashes.")
    assert d is not None and d.kind == "mps_oom" and d.growth_text is not None
    assert described_oom("training on 4x A100: RAM usage grows until the process gets killed").kind == "host_oom"
    assert described_oom("the memory of my program is fine, it crashes with a segfault in the tokenizer") is None
