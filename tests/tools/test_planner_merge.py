"""Adapter merge / export commands: planned as weights only, moved to the CPU when the GPUs cannot hold them."""

from __future__ import annotations

from ask_oom.tools.configs import apply_config_to_setup, load_config, plan_fixes
from ask_oom.tools.configs.schema import Constraints
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.labels import RootCause
from ask_oom.tools.memory import resolve_model
from ask_oom.tools.training_setup import TrainingSetup


def _setup(doc, model: str, gpu: str, host_gib: int | None = None):
    setup = apply_config_to_setup(doc, TrainingSetup())
    setup = setup.with_fact("model", resolve_model(model), "user", "test").with_fact("gpu", lookup_gpu(gpu), "user", "test")
    if host_gib:
        setup = setup.with_fact("host_ram_bytes", host_gib * 2**30, "user", "test")
    return setup


def test_export_command_is_read_as_a_merge():
    doc = load_config("swift export --merge_lora true --ckpt_dir out/ckpt\n", "run.sh")
    assert doc.framework == "swift" and doc.launcher["task"] == "merge"


def test_weights_too_big_for_the_gpu_move_the_merge_to_the_cpu():
    doc = load_config("swift export --merge_lora true --ckpt_dir out/ckpt\n", "run.sh")
    plan = plan_fixes(_setup(doc, "Qwen/Qwen2.5-72B", "A100 80GB"), doc, [], Constraints(num_gpus=1))
    assert plan.fits and [(c.key, c.to_value) for c in plan.changes] == [("device_map", "cpu")]
    assert plan.fixed_config.endswith("--device_map cpu\n")
    # too little host RAM for the CPU merge: said plainly, not claimed to fit
    plan = plan_fixes(_setup(doc, "Qwen/Qwen2.5-72B", "A100 80GB", host_gib=64), doc, [], Constraints(num_gpus=1))
    assert not plan.fits and any("host RAM" in n for n in plan.notes)


def test_a_merge_that_fits_stays_on_the_gpu_unless_loading_failed():
    doc = load_config("swift export --merge_lora true --ckpt_dir out/ckpt\n", "run.sh")
    setup = _setup(doc, "Qwen/Qwen2.5-7B", "A100 80GB")
    assert plan_fixes(setup, doc, [], Constraints(num_gpus=1)).changes == []
    failed = [RootCause(label="model_load_oom", score=0.9, why=["loading failed"])]
    plan = plan_fixes(setup, doc, failed, Constraints(num_gpus=1))
    assert [(c.key, c.to_value) for c in plan.changes] == [("device_map", "cpu")]
