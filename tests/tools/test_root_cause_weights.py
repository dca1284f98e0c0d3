"""The ranking's numbers live in one table (tools/root_causes/weights.py): the rules hold none, every rule has a
weight, the table can be overridden, and one scorer turns signals into ranked causes (with a log or without)."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import pytest

from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.labels import Label
from ask_oom.tools.log_parser import parse_log
from ask_oom.tools.memory import estimate_memory, resolve_model
from ask_oom.tools.root_causes import (DEFAULT_WEIGHTS, THRESHOLDS, WEIGHTS, collect_signals, rank_root_causes,
                                       request_explained, score_signals, tensor_candidates)
from ask_oom.tools.root_causes.phase import _PHASE_LABELS
from ask_oom.tools.root_causes.related_errors import RELATED, _related_rule
from ask_oom.tools.root_causes.signals import Kind, discount, support
from ask_oom.tools.root_causes.weights import HAND_WEIGHTS, Weights
from ask_oom.tools.training_setup import TrainingSetup

PACKAGE = Path(__import__("ask_oom.tools.root_causes", fromlist=["x"]).__file__).parent
RULE_MODULES = sorted(p for p in PACKAGE.glob("*.py") if p.name != "weights.py")
# 0, 1 and 2 stay allowed: empty / one / two of something (a pair of sequences, ZeRO-2, "several GPUs", 2 ** n).
STRUCTURAL = {0, 1, 2}

FRAGMENTED = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 320.00 MiB. GPU 0 has a total capacity of "
              "79.19 GiB of which 150.00 MiB is free. Including non-PyTorch memory, this process has 78.95 GiB memory in "
              "use. Of the allocated memory 73.60 GiB is allocated by PyTorch, and 4.90 GiB is reserved by PyTorch but "
              "unallocated.\n")


def _numbers(path: Path) -> list[tuple[int, object]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, (int, float, complex)) and not isinstance(n.value, bool) and n.value not in STRUCTURAL]


@pytest.mark.parametrize("path", RULE_MODULES, ids=lambda p: p.name)
def test_rule_modules_hold_no_numbers(path):
    found = _numbers(path)
    assert not found, (f"{path.name} holds numeric literals {found} (line, value): name them in "
                       "tools/root_causes/weights.py (WEIGHTS, THRESHOLDS or the fixed facts) and use the name")


def _source_strings() -> set[str]:
    strings: set[str] = set()
    for path in RULE_MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
    return strings


def _literal_rule_names() -> set[str]:
    """Rule names written as the second argument of support()/discount() (constants, or either branch of an if)."""
    names: set[str] = set()

    def constants(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.IfExp):
            return constants(node.body) + constants(node.orelse)
        return []

    for path in RULE_MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("support", "discount") and len(node.args) > 1:
                names.update(constants(node.args[1]))
    return names


def test_every_rule_has_a_weight_and_every_weight_a_rule():
    table_rules = {name for rules in _PHASE_LABELS.values() for _, name, _ in rules}
    table_rules |= {_related_rule(label, oom) for label, _ in RELATED.values() for oom in (True, False)}
    arch = resolve_model("mistralai/Mixtral-8x7B-v0.1")
    setup = TrainingSetup(model=arch, micro_batch=2, eval_batch=4, method="full", quantization_bit=4,
                          provenance={}).with_fact("method", "full", "config").with_fact("quantization_bit", 4, "config")
    table_rules |= {name for cand in tensor_candidates(setup, estimate_memory(setup)) for name in cand.labels.values()}
    used = _literal_rule_names() | table_rules
    assert used - set(WEIGHTS) == set(), "rules without a weight in weights.WEIGHTS"
    unused = set(WEIGHTS) - _source_strings()
    assert not unused, f"weights no rule fires: {sorted(unused)}"


def test_every_threshold_is_read_by_a_rule():
    unused = set(THRESHOLDS) - _source_strings()
    assert not unused, f"thresholds no rule reads: {sorted(unused)}"


def test_a_rule_missing_from_the_table_raises():
    with pytest.raises(KeyError, match="no_such_rule"):
        score_signals([support(Label.batch_too_large, "no_such_rule", "a reason")])
    with pytest.raises(KeyError, match="no_such_rule"):
        DEFAULT_WEIGHTS.replace(points={"no_such_rule": 1.0})


def test_signals_are_frozen_and_typed():
    sig = support("fragmentation", "fragmented_cache", "why")
    assert sig.label is Label.fragmentation and sig.kind is Kind.support and sig.value == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        sig.value = 2.0  # type: ignore[misc]
    assert discount(Label.weights_exceed_gpu, "comparable_model_worked", "but").kind is Kind.discount


def test_the_scorer_sums_weights_times_values_then_applies_discounts():
    signals = [support(Label.not_oom, "bus_error", "bus"),                       # 8 points
               support(Label.fragmentation, "fragmented_cache", "frag"),         # 3.5
               support(Label.fragmentation, "fragmented_cache_excess", "frag", 3),  # + 0.5 x 3
               discount(Label.fragmentation, "comparable_model_worked", "but"),  # x 0.35
               support(Label.moe_memory, "phase_forward_activations", "tiny", 0.5)]   # 0.4 x 0.5: under the cut-off
    causes = score_signals(signals, Weights(points=HAND_WEIGHTS))   # the hand-written values in the comments
    assert [c.label for c in causes] == ["not_oom", "fragmentation"]
    scale = THRESHOLDS["score_scale"]
    assert causes[0].score == round(1 - math.exp(-8 / scale), 3)
    assert causes[1].score == round(1 - math.exp(-(3.5 + 1.5) * 0.35 / scale), 3)
    assert causes[1].why == ["frag", "but"]


def test_the_table_can_be_overridden():
    report = parse_log(FRAGMENTED)
    # the order among the leading causes is the fitted table's; the allocator's arithmetic names fragmentation
    frag = next(c for c in rank_root_causes(report)[:2] if c.label == "fragmentation")
    assert any("4.90 GiB is reserved by PyTorch but unallocated" in w for w in frag.why)
    quiet = DEFAULT_WEIGHTS.replace(points={"fragmented_cache": 0.0, "fragmented_cache_excess": 0.0})
    assert "fragmentation" not in [c.label for c in rank_root_causes(report, weights=quiet)]
    strict = DEFAULT_WEIGHTS.replace(thresholds={"max_causes": 1})
    assert len(rank_root_causes(report, weights=strict)) == 1
    assert rank_root_causes(report) == rank_root_causes(report, weights=DEFAULT_WEIGHTS)


def test_collecting_signals_is_pure_and_repeatable():
    report = parse_log(FRAGMENTED)
    first = collect_signals(report)
    assert first == collect_signals(report) and all(s.reason for s in first if s.kind is Kind.support)


def test_a_request_equal_to_a_tensor_of_the_setup_is_explained():
    gemma = resolve_model("google/gemma-7b")
    setup = TrainingSetup(model=gemma, method="lora", micro_batch=4, seq_len=1024)
    req = 4 * 1024 * 256000 * 4   # fp32 logits
    report = parse_log(f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {req / 2**30:.2f} GiB.\n")
    assert request_explained(report, setup, None)
    assert not request_explained(report, setup.model_copy(update={"seq_len": 333}), None)
    assert not request_explained(report, None, None)


def test_without_a_log_the_breakdown_ranks_the_causes_by_their_share():
    """Full fine-tuning of a 7B on a 24 GB card: at a short micro-batch of 1 the ~100 GiB of model states are the
    largest share and lead; LoRA of the same 7B at micro-batch 8 x 4096 tokens, its 16-bit weights well inside the card,
    is over by its activations alone, and the batch (or its length, or the kept activations) leads. (Full fine-tuning at
    that batch is over on both counts: which of two real causes leads is the fitted weights' call, so each setup here
    has one.)"""
    arch = resolve_model("meta-llama/Llama-2-7b-hf")
    states = TrainingSetup(model=arch, method="full", micro_batch=1, seq_len=512, gpu=lookup_gpu("RTX 4090"))
    est = estimate_memory(states)
    causes = rank_root_causes(None, states, est)
    assert est.fits is False and causes
    assert causes[0].label in ("weights_exceed_gpu", "full_ft_model_states")
    over = TrainingSetup(model=arch, method="lora", micro_batch=8, seq_len=4096, gpu=lookup_gpu("RTX 4090"))
    est = estimate_memory(over)
    # the weights fit the card; the activations are many times the weights
    assert est.breakdown.all_weights() < est.budget_bytes < est.breakdown.step_activations()
    assert est.breakdown.step_activations() > 4 * est.breakdown.all_weights()
    causes = rank_root_causes(None, over, est)
    assert est.fits is False and causes
    assert causes[0].label in ("batch_too_large", "seq_len_too_long", "no_gradient_checkpointing")
    assert [c.score for c in causes] == sorted((c.score for c in causes), reverse=True)
    fits = TrainingSetup(model=arch, method="lora", micro_batch=1, seq_len=256, gpu=lookup_gpu("H100"))
    est = estimate_memory(fits)
    assert est.fits and rank_root_causes(None, fits, est) == []
    assert rank_root_causes(None, over, None) == [] and rank_root_causes(None, None, None) == []


def test_the_fitted_table_names_only_known_rules_and_calibrates_the_probabilities():
    """tools/root_causes/fitted_weights.json (evals/fit_weights.py --write) may only refit rules the hand table has;
    its null option and temperature are what the probabilities use."""
    import json

    from ask_oom.tools.root_causes.weights import FITTED_PATH

    data = json.loads(FITTED_PATH.read_text(encoding="utf-8"))
    assert set(data["points"]) <= set(HAND_WEIGHTS)
    assert all(v >= 0 for v in data["points"].values())
    assert all(WEIGHTS[k] == pytest.approx(v) for k, v in data["points"].items())
    assert THRESHOLDS["unexplained_points"] == pytest.approx(data["thresholds"]["unexplained_points"])
    assert THRESHOLDS["probability_temperature"] == pytest.approx(data["thresholds"]["probability_temperature"])
