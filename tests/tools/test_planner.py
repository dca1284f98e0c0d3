"""The fix planner on the five seed scenarios, constraints, nothing-fits, unverified plans and actions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ask_oom.tools.configs import ConfigChange, Constraints, apply_config_to_setup, load_config, plan_fixes
from ask_oom.assistant.agent import diagnose
from ask_oom.assistant.diagnosis import DiagnoseRequest
from ask_oom.tools.report_refinement import observed_peak
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.labels import RootCause
from ask_oom.tools.memory import estimate_memory
from ask_oom.tools.training_setup import TrainingSetup

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"
SCENARIOS = sorted(p.name for p in SEEDS.iterdir() if (p / "expected.json").is_file())


def _scenario(folder: str):
    d = SEEDS / folder
    expected = json.loads((d / "expected.json").read_text())
    files = {name: (d / name).read_text() for name in [expected["config"], *expected.get("extra_configs", [])]}
    doc = load_config(files[expected["config"]], expected["config"], files)
    req = expected.get("request", {})
    # the pipeline up to the causes (no retrieval, no plan): the planner under test plans from them
    found = diagnose(DiagnoseRequest(log_text=(d / expected["log"]).read_text(), config_text=files[expected["config"]],
                                     config_name=expected["config"], extra_configs=files, gpu=req.get("gpu"),
                                     num_gpus=req.get("num_gpus"), retrieve=False, plan=False))
    setup, causes, report = found.setup, found.root_causes, found.report
    constraints = Constraints(num_gpus=req.get("num_gpus"), observed_peak_bytes=observed_peak(report))
    return expected, doc, setup, causes, constraints


def _matches(settings: dict, group: list[dict]) -> bool:
    for cond in group:
        v = settings.get(cond["key"])
        if "value" in cond and v != cond["value"]:
            return False
        if "max" in cond and not (isinstance(v, int) and v <= cond["max"]):
            return False
        if "min" in cond and not (isinstance(v, int) and v >= cond["min"]):
            return False
    return True


@pytest.mark.parametrize("folder", SCENARIOS)
def test_seed_scenario_fixed_config_fits_and_contains_the_documented_fix(folder):
    expected, doc, setup, causes, constraints = _scenario(folder)
    assert setup.model is not None and setup.gpu is not None
    plan = plan_fixes(setup, doc, causes, constraints)
    assert plan.fits, plan.notes
    assert plan.estimate_after is not None and plan.estimate_after.fits
    assert plan.fixed_config is not None and plan.diff
    fixed = load_config(plan.fixed_config, doc.name, {doc.deepspeed_name or "-": plan.fixed_deepspeed or doc.deepspeed_text or "{}"})
    assert any(_matches(fixed.settings, group) for group in expected["documented_fix_any_of"]), plan.changes
    # every config edit says why and the first edit of each fix says how much it saves
    edits = [c for c in plan.changes if c.key is not None]
    assert edits and all(c.rationale for c in edits)
    assert (any(c.bytes_saved and c.bytes_saved > 0 for c in edits) or any("host RAM" in c.rationale for c in edits)
            or any("the diagnosed cause:" in c.rationale for c in edits))
    # the fixed config's own setup estimates the same as the plan's after-estimate
    refit = apply_config_to_setup(fixed, setup.model_copy(update={"provenance": {}}))
    assert estimate_memory(refit.model_copy(update={"gpu": setup.gpu, "num_gpus": setup.num_gpus,
                                                    "attn_implementation": plan_attention(plan, setup)})).peak_bytes \
        == pytest.approx(plan.estimate_after.peak_bytes, rel=0.02)


def plan_attention(plan, setup: TrainingSetup) -> str:
    """Attention after the plan (the log-derived eager fact is not in the config file)."""
    for c in plan.changes:
        if c.key in ("flash_attn", "attn_implementation"):
            return "flash_attention_2" if c.to_value in ("fa2", "flash_attention_2") else str(c.to_value)
    return setup.attn_implementation


def test_moe_llava_keeps_the_effective_batch():
    _, doc, setup, causes, constraints = _scenario("moe-llava-phi2")
    plan = plan_fixes(setup, doc, causes, constraints)
    by_key = {c.key: c for c in plan.changes if c.key}
    mb, ga = by_key["per_device_train_batch_size"], by_key["gradient_accumulation_steps"]
    assert (mb.from_value, mb.to_value, ga.from_value, ga.to_value) == (8, 4, 2, 4)
    assert mb.to_value * ga.to_value * setup.num_gpus == 8 * 2 * setup.num_gpus
    assert mb.tier == 2 and not mb.changes_results


def test_host_ram_scenario_moves_to_lora_and_drops_offload():
    _, doc, setup, causes, constraints = _scenario("qwen2.5-32b")
    plan = plan_fixes(setup, doc, causes, constraints)
    keys = {(c.target, c.key): c.to_value for c in plan.changes if c.key}
    assert keys[("config", "finetuning_type")] == "lora"
    assert plan.estimate_after.host_bytes < plan.estimate_before.host_bytes
    assert json.loads(plan.fixed_deepspeed)["zero_optimization"]["offload_param"]["device"] == "none"
    assert any("results differ" in n for n in plan.notes)


def test_constraints_are_respected():
    _, doc, setup, causes, constraints = _scenario("qwen2.5-32b")
    kept = plan_fixes(setup, doc, causes, constraints.model_copy(update={"keep_method": True}))
    assert not any(c.key in ("finetuning_type", "quantization_bit") for c in kept.changes)
    assert not kept.fits and any(n.startswith("nothing fits") for n in kept.notes)
    assert any(n.startswith("hardware:") for n in kept.notes)
    _, doc, setup, causes, constraints = _scenario("kimi-vl-a3b")
    long_ctx = setup.model_copy(update={"seq_len": 65536})
    plan = plan_fixes(long_ctx, doc, causes, constraints.model_copy(update={"keep_seq_len": True, "observed_peak_bytes": None}))
    assert not any(c.key == "cutoff_len" for c in plan.changes)
    plan = plan_fixes(long_ctx, doc, causes, constraints.model_copy(update={"observed_peak_bytes": None}))
    cut = [c for c in plan.changes if c.key == "cutoff_len"]
    assert plan.fits and cut and cut[0].changes_results and any("truncated" in n for n in plan.notes)
    _, doc, setup, causes, constraints = _scenario("moe-llava-phi2")
    plan = plan_fixes(setup, doc, causes, constraints.model_copy(update={"keep_batch": True, "no_deepspeed": True}))
    assert not any(c.key in ("per_device_train_batch_size", "gradient_accumulation_steps") for c in plan.changes)
    assert not any(c.target == "deepspeed" for c in plan.changes)


def test_already_fitting_setup_changes_nothing():
    doc = load_config("model_name_or_path: Qwen/Qwen2.5-0.5B\nfinetuning_type: lora\ncutoff_len: 1024\n"
                      "per_device_train_batch_size: 2\nstage: sft\n", "train.yaml")
    setup = apply_config_to_setup(doc, TrainingSetup()).model_copy(update={"gpu": lookup_gpu("A100 80GB")})
    plan = plan_fixes(setup, doc, [], Constraints())
    assert plan.fits and plan.changes == [] and plan.fixed_config == doc.text and plan.diff == ""


@pytest.mark.parametrize("text, name, key", [
    # axolotl passes micro_batch_size on as per_device_train_batch_size: a key it does not read would fix nothing
    ("base_model: meta-llama/Llama-2-7b-hf\nadapter: lora\nlora_r: 16\nsequence_len: 4096\nmicro_batch_size: 8\n"
     "batch_size: 64\nbf16: true\n", "axolotl.yaml", "micro_batch_size"),
    ("model_name_or_path: meta-llama/Llama-2-7b-hf\nfinetuning_type: lora\ncutoff_len: 4096\n"
     "per_device_train_batch_size: 8\nstage: sft\n", "train.yaml", "per_device_train_batch_size"),
])
def test_the_batch_is_changed_under_the_key_the_config_sets_it_with(text, name, key):
    doc = load_config(text, name)
    setup = apply_config_to_setup(doc, TrainingSetup()).model_copy(update={"gpu": lookup_gpu("RTX 4090")})
    plan = plan_fixes(setup, doc, [RootCause(label="batch_too_large", score=0.9)], Constraints())
    changed = {c.key: c for c in plan.changes if c.key}
    assert changed[key].from_value == 8 and changed[key].to_value < 8
    assert set(changed) & {"micro_batch_size", "per_device_train_batch_size", "batch_size"} == {key}
    assert load_config(plan.fixed_config, name).settings[key] == changed[key].to_value


def test_unknown_model_plans_from_causes_and_says_unverified():
    doc = load_config("model_name_or_path: /data/my-private-model\nstage: sft\nfinetuning_type: full\ncutoff_len: 8192\n"
                      "per_device_train_batch_size: 4\ngradient_accumulation_steps: 2\n", "train.yaml")
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.model is None
    causes = [RootCause(label="batch_too_large", score=0.8), RootCause(label="seq_len_too_long", score=0.5)]
    plan = plan_fixes(setup, doc, causes, Constraints())
    assert not plan.fits and plan.estimate_before is None
    assert any("unverified" in n for n in plan.notes)
    keys = {c.key: c.to_value for c in plan.changes if c.key}
    assert keys["per_device_train_batch_size"] * keys["gradient_accumulation_steps"] == 8
    assert "cutoff_len" in keys and keys["cutoff_len"] < 8192


def test_non_budget_causes_become_actions():
    doc = load_config("model_name_or_path: Qwen/Qwen2.5-0.5B\nfinetuning_type: lora\nstage: sft\nbf16: true\n"
                      "per_device_train_batch_size: 1\ncutoff_len: 512\n", "train.yaml")
    setup = apply_config_to_setup(doc, TrainingSetup()).model_copy(update={"gpu": lookup_gpu("V100 16GB")})
    causes = [RootCause(label=x, score=0.7) for x in ("fragmentation", "other_process", "dtype_unsupported", "quantization_setup")]
    plan = plan_fixes(setup, doc, causes, Constraints())
    actions = " | ".join(c.action for c in plan.changes if c.action)
    assert "expandable_segments:True" in actions and "free the GPU" in actions and "BitsAndBytesConfig" in actions
    # V100 has no bf16: the dtype problem becomes fp16 in the config itself
    keys = {c.key: c.to_value for c in plan.changes if c.key}
    assert keys == {"bf16": False, "fp16": True}
    assert "bf16: false" in plan.fixed_config and "fp16: true" in plan.fixed_config


def test_new_deepspeed_file_when_the_run_has_none():
    doc = load_config('{"model_name_or_path": "meta-llama/Llama-3.1-8B", "output_dir": "o", "bf16": true, '
                      '"gradient_checkpointing": true, "per_device_train_batch_size": 1, "max_seq_length": 2048}', "args.json")
    setup = apply_config_to_setup(doc, TrainingSetup()).model_copy(update={"gpu": lookup_gpu("A100 80GB"), "num_gpus": 8})
    causes = [RootCause(label="full_ft_model_states", score=0.9)]
    plan = plan_fixes(setup, doc, causes, Constraints(keep_method=True))
    assert plan.fits
    ds_key = [c for c in plan.changes if c.key == "deepspeed"]
    assert ds_key and ds_key[0].to_value.startswith("ds_z")
    ds = json.loads(plan.fixed_deepspeed)
    assert ds["zero_optimization"]["stage"] in (2, 3) and ds["train_micro_batch_size_per_gpu"] == "auto"
    assert json.loads(plan.fixed_config)["deepspeed"] == ds_key[0].to_value
    assert any(c.action == "pip install deepspeed" for c in plan.changes)


def test_planner_is_idempotent_on_its_own_output():
    for folder in SCENARIOS:
        _, doc, setup, causes, constraints = _scenario(folder)
        plan = plan_fixes(setup, doc, causes, constraints)
        files = {doc.deepspeed_name: plan.fixed_deepspeed or doc.deepspeed_text} if doc.deepspeed_name else None
        fixed_doc = load_config(plan.fixed_config, doc.name, files)
        fixed_setup = apply_config_to_setup(fixed_doc, setup.model_copy(update={"provenance": {}}))
        fixed_setup = fixed_setup.model_copy(update={"gpu": setup.gpu, "num_gpus": setup.num_gpus,
                                                     "attn_implementation": plan_attention(plan, setup)})
        again = plan_fixes(fixed_setup, fixed_doc, [], Constraints(num_gpus=constraints.num_gpus))
        assert again.fits, folder
        assert [c for c in again.changes if c.key] == [], folder
        assert again.fixed_config == plan.fixed_config, folder


def test_eval_only_oom_uses_eval_accumulation_and_a_smaller_eval_batch():
    doc = load_config('{"model_name_or_path": "Qwen/Qwen2.5-7B", "output_dir": "o", "do_eval": true, "eval_strategy": "steps", '
                      '"bf16": true, "per_device_train_batch_size": 1, "per_device_eval_batch_size": 64, '
                      '"gradient_checkpointing": true, "max_seq_length": 4096, "finetuning_type": "lora"}', "args.json")
    setup = apply_config_to_setup(doc, TrainingSetup()).model_copy(update={"gpu": lookup_gpu("H100")})
    assert not estimate_memory(setup, mode="eval").fits
    hint = ConfigChange(key="eval_accumulation_steps", to_value=1, confirmed_by=["hf-7232-eval-predictions-kept-on-gpu"])
    plan = plan_fixes(setup, doc, [RootCause(label="eval_accumulation", score=0.9)], Constraints(), hints=[hint])
    assert plan.fits and plan.estimate_after.fits
    keys = {c.key: c for c in plan.changes if c.key}
    assert keys["eval_accumulation_steps"].to_value == 1 and keys["eval_accumulation_steps"].tier == 1
    assert keys["eval_accumulation_steps"].confirmed_by == ["hf-7232-eval-predictions-kept-on-gpu"]
    assert keys["per_device_eval_batch_size"].to_value < 64
    assert "per_device_train_batch_size" not in keys             # training was never the problem
    data = json.loads(plan.fixed_config)
    assert data["eval_accumulation_steps"] == 1 and data["per_device_eval_batch_size"] == keys["per_device_eval_batch_size"].to_value


def test_accelerate_config_gets_zero_and_plans_work_without_a_document():
    from ask_oom.tools.configs.yaml_doc import read_yaml

    text = (SEEDS.parent / "configs" / "accelerate_ds.yaml").read_text()
    doc = load_config(text, "accelerate_ds.yaml")
    base = TrainingSetup(model_name="meta-llama/Llama-3.1-8B", gradient_checkpointing=True, micro_batch=1, seq_len=2048)
    from ask_oom.tools.memory import resolve_model

    base = base.model_copy(update={"model": resolve_model("meta-llama/Llama-3.1-8B"), "gpu": lookup_gpu("A100 40GB")})
    setup = apply_config_to_setup(doc, base)
    assert setup.zero_stage == 2 and setup.num_gpus == 4
    causes = [RootCause(label="full_ft_model_states", score=0.9)]
    plan = plan_fixes(setup, doc, causes, Constraints(keep_method=True))
    assert plan.fits
    data = read_yaml(plan.fixed_config)
    assert data["deepspeed_config"]["zero_stage"] == 3 or data["deepspeed_config"]["offload_optimizer_device"] == "cpu"
    assert "# written by accelerate config" in plan.fixed_config
    bare = plan_fixes(setup, None, causes, Constraints(keep_method=True))
    assert bare.fits and bare.fixed_config is None
    assert {c.key for c in bare.changes if c.key} <= {"zero_optimization.stage", "zero_optimization.offload_optimizer",
                                                      "zero_optimization.offload_param"}


def test_trl_script_gets_attention_and_checkpointing_edited_in_place():
    text = ("#!/bin/bash\naccelerate launch --num_processes 1 trl/scripts/sft.py \\\n    --model_name_or_path Qwen/Qwen2.5-1.5B \\\n"
            "    --attn_implementation eager \\\n    --max_seq_length 8192 \\\n    --per_device_train_batch_size 4 \\\n"
            "    --gradient_accumulation_steps 4 \\\n    --bf16 \\\n    --use_peft \\\n    --output_dir out\n")
    doc = load_config(text, "sft.sh")
    setup = apply_config_to_setup(doc, TrainingSetup()).model_copy(update={"gpu": lookup_gpu("4090")})
    assert setup.method == "lora" and setup.attn_implementation == "eager" and not setup.gradient_checkpointing
    assert setup.num_gpus == 1 and setup.seq_len == 8192
    causes = [RootCause(label="eager_attention", score=0.8), RootCause(label="no_gradient_checkpointing", score=0.6)]
    plan = plan_fixes(setup, doc, causes, Constraints())
    keys = {c.key: c.to_value for c in plan.changes if c.key}
    assert plan.fits and keys["attn_implementation"] == "flash_attention_2"
    assert "    --attn_implementation flash_attention_2 \\\n" in plan.fixed_config
    again = load_config(plan.fixed_config, "sft.sh")
    assert again.settings["output_dir"] == "out" and again.launcher["program"] == "accelerate"
    if "gradient_checkpointing" in keys:
        assert again.settings["gradient_checkpointing"] is True


def test_observed_oom_that_the_calculator_says_fits_still_targets_the_primary_cause():
    doc = load_config("model_name_or_path: Qwen/Qwen2.5-0.5B\nstage: sft\nfinetuning_type: full\ncutoff_len: 4096\n"
                      "per_device_train_batch_size: 1\nbf16: true\n", "train.yaml")
    setup = apply_config_to_setup(doc, TrainingSetup()).model_copy(update={"gpu": lookup_gpu("A100 80GB")})
    causes = [RootCause(label="seq_len_too_long", score=0.7)]
    quiet = plan_fixes(setup, doc, causes, Constraints())
    assert quiet.fits and not [c for c in quiet.changes if c.key]
    plan = plan_fixes(setup, doc, causes, Constraints(observed_oom=True))
    edits = [c for c in plan.changes if c.key]
    assert len(edits) == 1 and edits[0].bytes_saved >= 0.1 * plan.estimate_before.peak_bytes
    assert any("cannot confirm" in n for n in plan.notes)
    # growth and fragmentation are not nudged: their fixes are actions
    growth = plan_fixes(setup, doc, [RootCause(label="memory_growth", score=0.7)], Constraints(observed_oom=True))
    assert not [c for c in growth.changes if c.key] and any(c.action for c in growth.changes)


def test_unverified_plan_uses_confirmed_case_fixes_for_keys_the_config_has():
    doc = load_config("model_name_or_path: /data/my-private-model\nstage: sft\nfinetuning_type: lora\ncutoff_len: 8192\n"
                      "per_device_train_batch_size: 1\n", "train.yaml")
    setup = apply_config_to_setup(doc, TrainingSetup())
    hints = [ConfigChange(key="cutoff_len", to_value=4096, rationale="shorter samples", confirmed_by=["case-a"]),
             ConfigChange(key="not_in_this_config", to_value=1, confirmed_by=["case-b"]),
             ConfigChange(key="per_device_train_batch_size", to_value=1, confirmed_by=["case-c"]),
             ConfigChange(key="finetuning_type", to_value="full", rationale="unconfirmed idea")]
    plan = plan_fixes(setup, doc, [], Constraints(), hints=hints)
    keys = {c.key: c for c in plan.changes if c.key}
    assert set(keys) == {"cutoff_len"} and keys["cutoff_len"].confirmed_by == ["case-a"]
    assert "cutoff_len: 4096" in plan.fixed_config and not plan.fits


def test_accelerate_launch_reads_its_config_file_and_says_what_to_set_there():
    acc = (SEEDS.parent / "configs" / "accelerate_ds.yaml").read_text()
    script = ("accelerate launch --config_file accelerate_ds.yaml train.py \\\n  --model_name_or_path meta-llama/Llama-3.1-8B \\\n"
              "  --per_device_train_batch_size 1 \\\n  --gradient_checkpointing True \\\n  --bf16 True \\\n  --max_seq_length 2048\n")
    doc = load_config(script, "run.sh", {"accelerate_ds.yaml": acc})
    assert doc.format == "shell" and doc.launcher["num_gpus"] == 4 and doc.deepspeed == {"zero_optimization": {"stage": 2}}
    setup = apply_config_to_setup(doc, TrainingSetup()).model_copy(update={"gpu": lookup_gpu("A100 40GB")})
    assert setup.num_gpus == 4 and setup.zero_stage == 2 and setup.model is not None
    plan = plan_fixes(setup, doc, [RootCause(label="full_ft_model_states", score=0.9)], Constraints(keep_method=True))
    assert plan.fits
    told = [c.action for c in plan.changes if c.action and c.action.startswith("in accelerate_ds.yaml set deepspeed_config.")]
    assert told and plan.fixed_config == script      # the script itself needs no edit


LOAD_SNIPPET = ('model = AutoModelForCausalLM.from_pretrained("Qwen/Qwen2.5-1.5B-Instruct", torch_dtype=torch.bfloat16,\n'
                '                                             attn_implementation="eager")\n'
                'peft_config = LoraConfig(r=16, target_modules="all-linear")\n')
ARGS_SNIPPET = 'args = TrainingArguments(output_dir="out", bf16=True, per_device_train_batch_size=1, max_seq_length=4096)\n'


@pytest.mark.parametrize("code, expected", [(LOAD_SNIPPET, "attn_implementation"),
                                            (LOAD_SNIPPET + ARGS_SNIPPET, "gradient_checkpointing")])
def test_a_snippet_gets_a_fix_made_of_settings_it_has_a_place_for(code, expected):
    # without TrainingArguments in the paste, checkpointing has nowhere to go: the fitting fix it can hold is chosen
    doc = load_config(code, "train.py")
    setup = apply_config_to_setup(doc, TrainingSetup()).with_fact("gpu", lookup_gpu("4090"), "user", "--gpu 4090")
    for field, value in (("seq_len", 4096), ("micro_batch", 1), ("gradient_checkpointing", False), ("precision", "bf16_mixed")):
        setup = setup.with_fact(field, value, "user", "stated")
    causes = [RootCause(label="batch_too_large", score=0.8), RootCause(label="eager_attention", score=0.6)]
    plan = plan_fixes(setup, doc, causes, Constraints())
    assert plan.fits and plan.fixed_config is not None and plan.fixed_config != code
    assert [c.key for c in plan.changes if c.key] == [expected]
    assert not any(n.startswith("could not rewrite") for n in plan.notes)


def test_a_host_far_larger_than_the_runs_need_is_not_squeezed_for_a_host_kill():
    doc = load_config("model_name_or_path: Qwen/Qwen2.5-7B\nfinetuning_type: lora\nstage: sft\ncutoff_len: 1024\n"
                      "per_device_train_batch_size: 1\n", "train.yaml")
    setup = apply_config_to_setup(doc, TrainingSetup()).model_copy(update={"gpu": lookup_gpu("A100 80GB")})
    roomy = setup.with_fact("host_ram_bytes", 512 * 2**30, "user", "512GB内存")
    plan = plan_fixes(roomy, doc, [RootCause(label="offload_host_ram", score=0.8)], Constraints())
    assert plan.fits and any("grew during the run" in n for n in plan.notes)
    tight = plan_fixes(setup, doc, [RootCause(label="offload_host_ram", score=0.8)], Constraints())
    assert any("killed for host RAM" in n for n in tight.notes)


def test_visual_tokens_diagnosed_get_an_image_cap_where_the_config_has_a_place_for_one():
    from ask_oom.tools.memory import resolve_model

    causes = [RootCause(label="vision_tokens", score=0.7)]
    unset = load_config("CUDA_VISIBLE_DEVICES=3,4 NPROC_PER_NODE=2 swift sft \\\n  --model_type qwen2-vl-7b-instruct \\\n"
                        "  --sft_type lora\n", "run.sh")
    setup = apply_config_to_setup(unset, TrainingSetup()).model_copy(update={
        "gpu": lookup_gpu("A40"), "model": resolve_model("Qwen/Qwen2-VL-7B-Instruct"), "images_per_sample": 1})
    plan = plan_fixes(setup, unset, causes, Constraints(observed_oom=True))
    cap = next(c for c in plan.changes if c.key == "MAX_PIXELS")
    assert cap.from_value is None and cap.to_value == 1024 * 1024 and "12,845,056" in cap.rationale   # the processor's own
    assert plan.fits and "NPROC_PER_NODE=2 MAX_PIXELS=1048576 swift sft" in plan.fixed_config
    stated = load_config("MAX_PIXELS=602112 swift sft --model_type qwen2-vl-7b-instruct --sft_type lora\n", "run.sh")
    capped = setup.model_copy(update={"image_max_pixels": 602112})
    again = next(c for c in plan_fixes(capped, stated, causes, Constraints(observed_oom=True)).changes if c.key == "MAX_PIXELS")
    assert again.to_value <= 602112 // 2              # it already failed at that cap: at least halve the visual tokens
    text_only = plan_fixes(setup, unset, [RootCause(label="seq_len_too_long", score=0.7)], Constraints(observed_oom=True))
    assert not any(c.key == "MAX_PIXELS" for c in text_only.changes)


def test_a_shell_script_gets_environment_settings_as_the_launcher_reads_them():
    from ask_oom.tools.configs.shell import set_flags

    prefix = "SIZE_FACTOR=8 MAX_PIXELS=1003520 CUDA_VISIBLE_DEVICES=0,1 swift sft --model_type qwen2-vl-7b-instruct\n"
    assert set_flags(prefix, {"MAX_PIXELS": 602112}) == prefix.replace("1003520", "602112")
    exported = "export MAX_PIXELS=1003520\nnohup swift sft --model_type qwen2-vl-7b-instruct > log 2>&1 &\n"
    assert set_flags(exported, {"MAX_PIXELS": 602112}) == exported.replace("1003520", "602112")
    bare = "swift sft --model_type qwen2-vl-7b-instruct\n"
    assert set_flags(bare, {"MAX_PIXELS": 602112}) == "MAX_PIXELS=602112 " + bare
    later = "swift sft --model_type qwen2-vl-7b-instruct --note MAX_PIXELS=5\n"    # an argument, not the environment
    assert set_flags(later, {"MAX_PIXELS": 7}).startswith("MAX_PIXELS=7 swift sft")
