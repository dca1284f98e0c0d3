"""Preference and RL stages: a DPO step runs the chosen and the rejected answer together and keeps a frozen
reference copy of the weights (unless the reference is the LoRA base with adapters off, offloaded, or the loss needs
none); LLaMA-Factory's `stage`, ms-swift's `rlhf_type` and OpenRLHF's cli modules all say so."""

from __future__ import annotations

import pytest

from ask_oom.tools.configs import Constraints, apply_config_to_setup, load_config, plan_fixes
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.labels import RootCause
from ask_oom.tools.memory import estimate_memory
from ask_oom.tools.training_setup import TrainingSetup
from ask_oom.tools.units import GiB

LF = "model_name_or_path: Qwen/Qwen2.5-7B\nstage: {stage}\nfinetuning_type: {method}\ncutoff_len: 2048\nper_device_train_batch_size: 2\n"
OPENRLHF = ("deepspeed --module openrlhf.cli.train_dpo \\\n   --micro_train_batch_size 1 \\\n"
            "   --pretrain /models/ZhipuAI/glm-4-9b-chat/ \\\n   --bf16 \\\n   --max_len 2048 \\\n   --zero_stage 3 \\\n"
            "   --beta 0.1 \\\n   --gradient_checkpointing{extra}\n")


def _setup(text: str, name: str) -> TrainingSetup:
    return apply_config_to_setup(load_config(text, name), TrainingSetup()).with_fact("gpu", lookup_gpu("A100 80GB"), "user", "gpu")


def test_llamafactory_full_dpo_adds_a_reference_copy_and_doubles_the_sequences():
    sft = _setup(LF.format(stage="sft", method="full"), "train.yaml")
    dpo = _setup(LF.format(stage="dpo", method="full"), "train.yaml")
    assert (dpo.stage, dpo.reference_model) == ("dpo", True) and dpo.provenance["reference_model"].origin == "config"
    a, b = estimate_memory(sft), estimate_memory(dpo)
    ref = b.breakdown.get("reference_weights")
    assert b.breakdown.get("weights") == a.breakdown.get("weights")
    assert 14 * GiB < ref < 15.5 * GiB                       # 7.6B parameters once more in bf16
    assert any("reference model" in n for n in b.notes)
    # chosen + rejected: the largest micro-batch of pairs is about half the largest of single sequences
    lora_sft = estimate_memory(_setup(LF.format(stage="sft", method="lora"), "train.yaml"))
    lora_dpo = estimate_memory(_setup(LF.format(stage="dpo", method="lora"), "train.yaml"))
    # at most half: each pair also runs the reference's no_grad forward while the policy's graph is alive
    assert lora_dpo.max_micro_batch <= lora_sft.max_micro_batch // 2
    assert lora_dpo.peak_bytes > lora_sft.peak_bytes


@pytest.mark.parametrize("stage, method, reference", [("dpo", "lora", False), ("orpo", "full", False),
                                                      ("kto", "full", True), ("sft", "full", False)])
def test_no_second_copy_for_lora_dpo_or_reference_free_losses(stage, method, reference):
    s = _setup(LF.format(stage="dpo" if stage == "orpo" else stage, method=method)
               + ("pref_loss: orpo\n" if stage == "orpo" else ""), "train.yaml")
    assert s.stage == stage and s.reference_model is reference


def test_openrlhf_dpo_command_is_read_with_its_own_flags_and_defaults():
    s = _setup(OPENRLHF.format(extra=""), "run.sh")
    assert (s.stage, s.reference_model, s.zero_stage, s.micro_batch, s.seq_len) == ("dpo", True, 3, 1, 2048)
    assert s.model is not None and s.model.model_type == "chatglm"
    assert s.attn_implementation == "eager" and s.provenance["attn_implementation"].origin == "default"
    assert _setup(OPENRLHF.format(extra=" \\\n   --flash_attn"), "run.sh").attn_implementation == "flash_attention_2"
    assert _setup(OPENRLHF.format(extra=" \\\n   --ref_offload"), "run.sh").reference_model is False


def test_an_openrlhf_fix_uses_its_flash_attn_flag():
    text = OPENRLHF.format(extra="").replace("--max_len 2048", "--max_len 16384")
    doc = load_config(text, "run.sh")
    setup = apply_config_to_setup(doc, TrainingSetup()).with_fact("gpu", lookup_gpu("A100 80GB"), "user", "gpu") \
        .with_fact("num_gpus", 8, "user", "8 GPUs")
    plan = plan_fixes(setup, doc, [RootCause(label="eager_attention", score=0.9)], Constraints())
    assert "--flash_attn" in plan.fixed_config and "attn_implementation" not in plan.fixed_config


def test_4bit_loading_outside_llamafactory_leaves_zero3_unable_to_partition_it():
    four_bit = _setup(OPENRLHF.format(extra=" \\\n   --load_in_4bit \\\n   --lora_rank 32"), "run.sh")
    assert four_bit.method == "qlora" and four_bit.quant_storage_sharded is False
    lf = _setup(LF.format(stage="sft", method="lora") + "quantization_bit: 4\n", "train.yaml")
    assert lf.method == "qlora" and lf.quant_storage_sharded is True


def test_openrlhf_can_move_its_reference_model_to_the_cpu():
    text = (OPENRLHF.format(extra=" \\\n   --load_in_4bit \\\n   --lora_rank 32")
            .replace("/models/ZhipuAI/glm-4-9b-chat/", "/models/Qwen2.5-72B-Instruct"))
    doc = load_config(text, "run.sh")
    setup = apply_config_to_setup(doc, TrainingSetup()).with_fact("gpu", lookup_gpu("A800 80GB"), "user", "gpu") \
        .with_fact("num_gpus", 8, "user", "8 GPUs")
    assert setup.reference_model and not setup.quant_storage_sharded
    plan = plan_fixes(setup, doc, [RootCause(label="weights_exceed_gpu", score=0.9)], Constraints())
    assert plan.fits and "--ref_offload" in plan.fixed_config
    assert plan.estimate_after.breakdown.all_weights() < plan.estimate_before.breakdown.all_weights() * 0.6
