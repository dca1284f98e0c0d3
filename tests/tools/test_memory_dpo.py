"""Preference stages sized with their own components: chosen + rejected (2x the sequences), the frozen reference copy
(full DPO/KTO), the reference's no_grad forward (its logits, while the policy's graph is alive), and none of it for the
reference-free ORPO/SimPO."""

from __future__ import annotations

from ask_oom.tools.configs import apply_config_to_setup, load_config
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.memory import count_params, estimate_memory
from ask_oom.tools.memory.estimator import _moments, _plan
from ask_oom.tools.training_setup import TrainingSetup

LF = ("model_name_or_path: Qwen/Qwen2.5-7B\nstage: {stage}\nfinetuning_type: {method}\ncutoff_len: 2048\n"
      "per_device_train_batch_size: 2\n{extra}")


def _setup(stage: str, method: str, extra: str = "") -> TrainingSetup:
    doc = load_config(LF.format(stage=stage, method=method, extra=extra), "train.yaml")
    return apply_config_to_setup(doc, TrainingSetup()).with_fact("gpu", lookup_gpu("H100"), "user", "--gpu")


def test_lora_dpo_has_no_reference_weights_but_a_reference_forward():
    est = estimate_memory(_setup("dpo", "lora"))
    assert est.breakdown.get("reference_weights") == 0
    assert any("adapters disabled" in n for n in est.notes)
    s = _setup("dpo", "lora")
    moments = _moments(s, _plan(s, "train"), "train", 2 * 2, 2048)
    # the reference's logits: 10 B x (2 pairs x 2 sequences) x 2048 tokens x vocab
    assert moments["reference_forward"]["reference_logits"] == 10 * 4 * 2048 * s.model.vocab_size


def test_full_dpo_loads_a_reference_copy_as_large_as_the_policy():
    s = _setup("dpo", "full", "pure_bf16: true\n")
    assert s.reference_model and s.precision == "pure_bf16"
    est = estimate_memory(s)
    # pure bf16: the policy's weights and the reference copy are both parameters x 2 B
    assert est.breakdown.get("reference_weights") == est.breakdown.get("weights") == count_params(s.model).total * 2
    assert "reference_weights" in {c.name for c in est.breakdown.components}
    assert est.breakdown.model_states() >= est.breakdown.get("weights") + est.breakdown.get("reference_weights")


def test_dpo_activations_are_twice_sfts_at_the_same_batch_and_length():
    sft, dpo = _setup("sft", "lora"), _setup("dpo", "lora")
    a = _moments(sft, _plan(sft, "train"), "train", 2, 2048)["forward_end"]
    b = _moments(dpo, _plan(dpo, "train"), "train", 2 * 2, 2048)["forward_end"]   # estimate_memory doubles the batch
    assert b["activations"] == 2 * a["activations"] and b["logits_and_loss"] == 2 * a["logits_and_loss"]
    est = estimate_memory(dpo)
    assert any("x2 (chosen + rejected" in c.formula for c in est.breakdown.components if c.name in ("activations", "logits_and_loss", "reference_logits"))


def test_orpo_and_simpo_are_reference_free():
    for loss in ("orpo", "simpo"):
        s = _setup("dpo", "full", f"pref_loss: {loss}\n")
        assert s.stage == loss and not s.reference_model
        est = estimate_memory(s)
        assert est.breakdown.get("reference_weights") == 0 and est.breakdown.get("reference_logits") == 0
        assert "reference_forward" not in _moments(s, _plan(s, "train"), "train", 4, 2048)
        assert any("reference-free" in n for n in est.notes)


def test_kto_keeps_a_reference_but_no_pairs():
    s = _setup("kto", "full")
    assert s.reference_model
    est = estimate_memory(s)
    assert est.breakdown.get("reference_weights") > 0
    assert "reference_forward" in _moments(s, _plan(s, "train"), "train", 2, 2048)
