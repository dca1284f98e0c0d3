"""Framework names have one home, tools/frameworks.py: the setup's Literal, every alias and every reader's detection
table use its names, so a name added in one place cannot go missing in another."""

from __future__ import annotations

from typing import get_args

import pytest

from ask_oom.kb import extract, facets
from ask_oom.tools import frameworks as fw
from ask_oom.tools.log_parser import facts
from ask_oom.tools.log_parser.versions import KNOWN_PACKAGES
from ask_oom.tools.training_setup import TrainingSetup


def test_the_setup_field_takes_exactly_the_canonical_names():
    assert get_args(TrainingSetup.model_fields["framework"].annotation) == fw.FRAMEWORKS


def test_every_alias_and_set_lands_on_a_canonical_name():
    targets = {*fw.ALIASES.values(), *fw.PACKAGES.values(), *fw.HF_TRAINER_FRAMEWORKS,
               *(v for v in fw.LOG_FRAMEWORKS.values() if v is not None)}
    assert targets <= set(fw.FRAMEWORKS)


def test_the_log_parser_detects_exactly_the_log_names_in_their_order():
    assert [name for name, _ in facts.FRAMEWORKS] == list(fw.LOG_FRAMEWORKS)   # most specific first
    assert fw.ENGINE_HOSTS <= set(fw.LOG_FRAMEWORKS)


def test_the_knowledge_base_detects_only_case_names():
    assert {name for name, _ in extract.FRAMEWORKS} <= set(fw.CASE_FRAMEWORKS)
    assert {value for _, facet, value in facets._QUERY_FACETS if facet == "framework"} <= set(fw.CASE_FRAMEWORKS)


def test_framework_packages_keep_their_versions_under_the_canonical_name():
    assert all(KNOWN_PACKAGES[pkg] == name for pkg, name in fw.PACKAGES.items())


@pytest.mark.parametrize("name, canonical", [
    ("llamafactory", "llamafactory"), ("LLaMA-Factory", "llamafactory"), ("llmtuner", "llamafactory"),
    ("moe-llava", "deepspeed_script"), ("deepspeed", "deepspeed_script"), ("transformers", "hf_trainer"),
    ("ms-swift", "swift"), ("mlx", "mlx"), ("accelerate", None), ("llama.cpp", None), ("", None), (None, None),
])
def test_canonical_framework(name, canonical):
    assert fw.canonical_framework(name) == canonical


def test_case_framework_speaks_the_knowledge_base_vocabulary():
    assert fw.case_framework("deepspeed_script") == "deepspeed" and fw.case_framework("trl") == "trl"
    assert all(fw.case_framework(name) in fw.CASE_FRAMEWORKS for name in fw.FRAMEWORKS)
