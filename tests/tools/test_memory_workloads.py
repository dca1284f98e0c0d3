"""Workloads read from the config (do_train / do_eval / do_predict / predict_with_generate), sized as such, and fixed
with their own keys only (issue 17: an eval-only Mistral-7B at 8 x 4096 was sized as training, 347.8 GiB against a
measured 23.5 GiB; `fix` of a predict config added per_device_train_batch_size and gradient_accumulation_steps)."""

from __future__ import annotations

import pytest

from ask_oom.tools.configs import load_config
from ask_oom.tools.configs.mapping import apply_config_to_setup
from ask_oom.tools.configs.planner import plan_fixes
from ask_oom.tools.configs.schema import Constraints
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.labels import RootCause
from ask_oom.tools.memory import estimate_memory
from ask_oom.tools.memory.estimator import kv_bytes_per_token
from ask_oom.tools.training_setup import TrainingSetup
from ask_oom.tools.units import GiB

EVAL_ONLY = """model_name_or_path: mistralai/Mistral-7B-v0.1
stage: sft
do_train: false
do_eval: true
finetuning_type: lora
dataset: alpaca_en_demo
cutoff_len: 4096
per_device_eval_batch_size: 8
bf16: true
output_dir: saves/eval
"""
PREDICT = """model_name_or_path: mistralai/Mistral-7B-v0.1
adapter_name_or_path: saves/lora
stage: sft
do_predict: true
predict_with_generate: true
finetuning_type: lora
eval_dataset: alpaca_en_demo
cutoff_len: 4096
max_new_tokens: 2048
per_device_eval_batch_size: 8
bf16: true
output_dir: saves/predict
"""
TRAIN_KEYS = {"per_device_train_batch_size", "gradient_accumulation_steps"}
EVAL_KEYS = {"per_device_eval_batch_size", "eval_accumulation_steps", "max_new_tokens", "num_beams"}


def _setup(text: str, gpu: str = "H100") -> tuple[TrainingSetup, object]:
    doc = load_config(text, "run.yaml")
    return apply_config_to_setup(doc, TrainingSetup()).with_fact("gpu", lookup_gpu(gpu), "user", "gpu"), doc


def test_eval_only_config_sizes_an_evaluation_step():
    setup, _ = _setup(EVAL_ONLY)
    assert setup.workload == "eval" and setup.provenance["workload"].origin == "config"
    est = estimate_memory(setup)
    assert est.workload == "eval" and est.peak_phase == "evaluation" and est.notes[0].startswith("sized: an evaluation step")
    parts = est.breakdown.as_dict()
    assert not parts.get("gradients") and not parts.get("optimizer_states") and est.n_trainable == 0
    # the measurement: 23.5 GiB on an H100 (a forward under no_grad, loss computed); sized in its band
    assert 23.0 * GiB < est.peak_bytes < 24.0 * GiB
    assert est.band_lower_bytes <= 23.5 * GiB <= est.band_upper_bytes
    # the same file with do_train is a training run
    train, _ = _setup(EVAL_ONLY.replace("do_train: false", "do_train: true"))
    assert train.workload == "train" and estimate_memory(train).workload == "train"


def test_an_evaluation_strategy_means_evaluation_between_training_steps():
    setup, _ = _setup(EVAL_ONLY.replace("do_train: false\n", "").replace("do_eval: true", "do_eval: true\neval_strategy: steps"))
    assert setup.workload == "train" and setup.eval_batch == 8


def test_predict_with_generate_sizes_weights_prompt_and_kv_cache():
    setup, _ = _setup(PREDICT)
    assert (setup.workload, setup.max_new_tokens, setup.eval_batch) == ("generate", 2048, 8)
    est = estimate_memory(setup)
    assert est.workload == "generate" and est.peak_phase == "generation"
    kv = est.breakdown.get("kv_cache")
    arch = setup.model
    assert kv_bytes_per_token(arch) == 2 * 8 * 128 * 2 * 32          # Mistral-7B GQA: 8 kv heads x 128, 32 layers
    assert kv >= 8 * 4096 * kv_bytes_per_token(arch)                   # at least the prompts' cache
    assert not est.breakdown.get("gradients") and not est.breakdown.get("optimizer_states")
    beams, _ = _setup(PREDICT + "num_beams: 4\n")
    assert estimate_memory(beams).breakdown.get("kv_cache") > 3 * kv    # every beam keeps a cache
    default_len, _ = _setup(PREDICT.replace("max_new_tokens: 2048\n", ""))
    assert default_len.max_new_tokens == 1024 and default_len.provenance["max_new_tokens"].origin == "default"


def test_predict_keeps_logits_until_eval_accumulation_steps():
    text = PREDICT.replace("predict_with_generate: true\n", "")
    setup, _ = _setup(text)
    assert setup.workload == "predict"
    one = estimate_memory(setup.model_copy(update={"eval_accumulation_steps": 1}))
    many = estimate_memory(setup.model_copy(update={"eval_samples": 800}))   # 100 steps of 8, none moved to the CPU
    step_logits = 4 * 8 * 4096 * 32000                                          # fp32 logits of one step
    assert many.breakdown.get("eval_accumulated") == 2 * 100 * step_logits      # kept + the torch.cat copy
    assert many.fits is False and one.peak_bytes < 30 * GiB
    assert any("eval_accumulation_steps" in n for n in estimate_memory(setup).notes)


@pytest.mark.parametrize("text", [EVAL_ONLY, PREDICT], ids=["eval-only", "predict-with-generate"])
def test_fix_changes_evaluation_and_generation_keys_only(text):
    setup, doc = _setup(text, gpu="4090")
    before = estimate_memory(setup)
    assert before.fits is False
    plan = plan_fixes(setup, doc, [RootCause(label="batch_too_large", score=0.6)], Constraints())
    keys = {c.key for c in plan.changes if c.key}
    assert keys and keys <= EVAL_KEYS and not keys & TRAIN_KEYS
    assert plan.fits and plan.estimate_after.workload == setup.workload
    assert "per_device_train_batch_size" not in (plan.fixed_config or "")


def test_pipeline_sizes_the_config_workload_when_the_log_says_nothing():
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest

    for text, sized in ((EVAL_ONLY, "eval"), (PREDICT, "generate")):
        d = diagnose(DiagnoseRequest(config_text=text, config_name="run.yaml", gpu="H100", retrieve=False, plan=False))
        assert d.sized == sized and d.estimate.workload == sized
