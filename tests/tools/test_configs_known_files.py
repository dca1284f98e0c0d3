"""Well-known DeepSpeed files by name (issue 18): a config that names LLaMA-Factory's examples/deepspeed/ds_z*_config.json,
LLaVA's scripts/zero*.json or Qwen's finetune/ds_config_zero*.json without giving it is read with the published content
(package data, copied verbatim), stated as an assumption; a switch of stage points at the family's published file."""

from __future__ import annotations

import json

import pytest

from ask_oom.tools.configs import apply_config_to_setup, load_config
from ask_oom.tools.configs.candidates import _switched_ds_file
from ask_oom.tools.configs.known_files import catalogue, known_file
from ask_oom.tools.training_setup import TrainingSetup
from ask_oom.ui.cli import main


@pytest.mark.parametrize("entry", catalogue(), ids=lambda f: f"{f.family}/{f.name}")
def test_each_published_file_is_packaged_with_its_source_and_says_its_stage_in_its_name(entry):
    text = entry.text()
    assert json.loads(text)["zero_optimization"]["stage"] == entry.zero()[0]
    assert str(entry.zero()[0]) in entry.name and ("offload" in entry.name) == entry.zero()[1]
    assert entry.source.startswith(entry.repo + "/blob/") and entry.commit in entry.source and entry.path in entry.source


@pytest.mark.parametrize("ref, family, stage", [
    ("examples/deepspeed/ds_z3_offload_config.json", "LLaMA-Factory", 3), ("ds_z0_config.json", "LLaMA-Factory", 0),
    ("./scripts/zero2.json", "LLaVA", 2), ("scripts/zero3_offload.json", "LLaVA", 3),
    ("finetune/ds_config_zero3.json", "Qwen", 3), ("'examples/deepspeed/ds_z2_config.json'", "LLaMA-Factory", 2),
])
def test_a_named_file_not_given_is_read_with_its_published_content(ref, family, stage):
    doc = load_config(f"stage: sft\nmodel_name_or_path: Qwen/Qwen2.5-7B\nfinetuning_type: full\ndeepspeed: {ref}\n",
                      "train.yaml")
    known = known_file(ref)
    assert known is not None and known.family == family and doc.deepspeed == known.config()
    assert doc.deepspeed_assumed == known.source and any("assumed" in n and known.path in n for n in doc.notes)
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.zero_stage == stage and setup.provenance["zero_stage"].origin == "default"   # an assumption


def test_a_given_file_wins_and_an_unknown_name_keeps_its_inferred_stage():
    given = load_config("stage: sft\ndeepspeed: ds_z3_config.json\n", "t.yaml",
                        {"ds_z3_config.json": '{"zero_optimization": {"stage": 3, "overlap_comm": true}}'})
    assert given.deepspeed == {"zero_optimization": {"stage": 3, "overlap_comm": True}} and given.deepspeed_assumed is None
    own = load_config("stage: sft\ndeepspeed: configs/my_zero3.json\n", "t.yaml")
    assert own.deepspeed == {"zero_optimization": {"stage": 3}} and own.deepspeed_assumed is None


@pytest.mark.parametrize("ref, stage, opt, param, new", [
    ("examples/deepspeed/ds_z2_config.json", 3, False, False, "examples/deepspeed/ds_z3_config.json"),
    ("examples/deepspeed/ds_z2_config.json", 3, True, True, "examples/deepspeed/ds_z3_offload_config.json"),
    ("./scripts/zero2.json", 3, False, False, "./scripts/zero3.json"),
    ("finetune/ds_config_zero2.json", 3, False, False, "finetune/ds_config_zero3.json"),
])
def test_a_switch_points_at_the_family_file_and_gives_its_published_text(ref, stage, opt, param, new):
    name, text, source = _switched_ds_file(ref, stage, opt, param)
    assert name == new and text == known_file(new).text() and source == known_file(new).source


def test_a_switch_the_family_does_not_publish_gets_a_new_name_and_a_template():
    name, text, source = _switched_ds_file("examples/deepspeed/ds_z2_config.json", 3, True, False)
    assert name == "examples/deepspeed/ds_z3_offload_optimizer_config.json" and source is None
    zero = json.loads(text)["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and "offload_param" not in zero


def test_estimate_states_the_assumption_too(tmp_path, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\nfinetuning_type: full\n"
                   "deepspeed: examples/deepspeed/ds_z3_config.json\ncutoff_len: 2048\nper_device_train_batch_size: 1\n")
    main(["estimate", "--config", str(cfg), "--gpu", "A100-80GB", "--gpus", "8"])
    assumed = capsys.readouterr().out.split("Assumed (framework defaults):")[1]
    assert "zero_stage" in assumed and "offload_param" in assumed
    main(["estimate", "--config", str(cfg), "--gpu", "A100-80GB", "--gpus", "8", "--json"])
    stage = json.loads(capsys.readouterr().out)["setup"]["provenance"]["zero_stage"]
    assert stage["origin"] == "default" and known_file("ds_z3_config.json").source in stage["detail"]
