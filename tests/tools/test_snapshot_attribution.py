"""Held memory attributed to the calculator's components from allocation stacks; the sum is always reserved."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ask_oom.tools.memory.schema import COMPONENTS
from ask_oom.tools.snapshot import SITE_RULES, attribute, load_snapshot, read_snapshot
from ask_oom.tools.snapshot.attribution import BACKWARD, FRAGMENTATION, UNATTRIBUTED

from .test_snapshot_builders import (ADAM, ATTENTION, BACKWARD as BACKWARD_STACK, FORWARD, LOSS, UNKNOWN, WEIGHTS,
                                     GiB, MiB, build, dumps, fr, llama_snapshot)


def _sum(summary) -> int:
    return sum(c.bytes for c in summary.components)


def test_llama_step_at_the_oom():
    s = load_snapshot(dumps(llama_snapshot()), name="rank0.pickle", rank=0)
    assert s.at == "oom"
    assert s.held("weights") == 4 * GiB
    assert s.held("optimizer_states") == 8 * GiB
    assert s.held("gradients") == 4 * GiB              # weight-sized blocks from backward
    assert s.held("activations") == 6 * GiB + 512 * MiB  # forward, plus backward temporaries
    assert s.held("attention_scores") == 512 * MiB
    assert s.held("logits_and_loss") == 4 * GiB
    assert s.held(UNATTRIBUTED) == 0
    assert s.fragmentation_bytes == 42 * 2 * MiB
    assert _sum(s) == s.reserved_bytes
    assert s.requested_bytes == 2 * GiB and s.device_free_bytes == int(1.2 * GiB)
    assert s.request_component == "logits_and_loss" and "loss_utils.py" in s.request_site
    assert s.top_sites[0].site.startswith("torch/optim/adam.py") and s.top_sites[0].component == "optimizer_states"
    assert any("modeling_llama.py" in t.site for t in s.top_sites if t.component == "activations")
    assert s.top_component() == "optimizer_states"
    s.model_dump_json()   # serializable


def test_every_rule_names_a_calculator_component():
    for pattern, component, why in SITE_RULES:
        assert component in COMPONENTS or component == BACKWARD, pattern
        assert why


def test_snapshot_without_frames_is_unattributed_and_says_why():
    s = load_snapshot(dumps(llama_snapshot(frames=False, oom=None)), name="bare")
    assert s.at == "snapshot" and not s.frames_recorded
    assert s.held(UNATTRIBUTED) == s.allocated_bytes > 0
    assert _sum(s) == s.reserved_bytes
    assert any("_record_memory_history" in n for n in s.notes)
    sites = {t.site: (t.bytes, t.blocks) for t in s.top_sites}   # grouped by block size only
    assert sites["no stack: 4.00 GiB blocks"] == (4 * GiB, 1)
    assert sites["no stack: 512.00 MiB blocks"] == (33 * 512 * MiB, 33)


def test_state_is_rolled_back_to_the_oom():
    """After the OOM the logits were freed (their segment released) and a new block allocated: at the OOM the
    logits were held and the new block was not."""
    raw = llama_snapshot()
    logits_seg = raw["segments"].pop()                 # the 4 GiB cross-entropy block's segment
    addr, size = logits_seg["address"], logits_seg["blocks"][0]["size"]
    new = {"device": 0, "address": 0x10, "total_size": 64 * MiB, "allocated_size": 64 * MiB, "active_size": 64 * MiB,
           "requested_size": 64 * MiB, "stream": 0, "segment_type": "large", "frames": UNKNOWN,
           "blocks": [{"address": 0x10, "size": 64 * MiB, "requested_size": 64 * MiB, "state": "active_allocated",
                       "frames": UNKNOWN}]}
    raw["segments"].append(new)
    raw["device_traces"][0] += [
        {"action": "free_requested", "addr": addr, "size": size, "stream": 0, "frames": FORWARD},
        {"action": "free_completed", "addr": addr, "size": size, "stream": 0, "frames": FORWARD},
        {"action": "segment_free", "addr": addr, "size": logits_seg["total_size"], "stream": 0, "frames": []},
        {"action": "segment_alloc", "addr": 0x10, "size": 64 * MiB, "stream": 0, "frames": UNKNOWN},
        {"action": "alloc", "addr": 0x10, "size": 64 * MiB, "stream": 0, "frames": UNKNOWN},
    ]
    at_oom = load_snapshot(dumps(raw), name="r")
    want = load_snapshot(dumps(llama_snapshot()), name="r")
    assert at_oom.at == "oom"
    assert at_oom.held("logits_and_loss") == 4 * GiB     # with its allocation stack, not the free's
    assert at_oom.held(UNATTRIBUTED) == 0
    assert at_oom.reserved_bytes == want.reserved_bytes
    assert _sum(at_oom) == at_oom.reserved_bytes
    raw["device_traces"][0] = [e for e in raw["device_traces"][0] if e["action"] != "oom"]
    at_snapshot = load_snapshot(dumps(raw), name="r")
    assert at_snapshot.at == "snapshot" and at_snapshot.held("logits_and_loss") == 0
    assert at_snapshot.held(UNATTRIBUTED) == 64 * MiB


def test_backward_blocks_are_gradients_only_up_to_the_weight_count():
    parts = [(100 * MiB, WEIGHTS), (100 * MiB, BACKWARD_STACK), (100 * MiB, BACKWARD_STACK), (7 * MiB, BACKWARD_STACK)]
    s = load_snapshot(dumps(build(parts)), name="b")
    assert s.held("gradients") == 100 * MiB
    assert s.held("activations") == 107 * MiB


def test_rules_by_site():
    cases = {
        "optimizer_states": ADAM, "attention_scores": ATTENTION, "logits_and_loss": LOSS, "activations": FORWARD,
        "kv_cache": [fr("/sp/transformers/cache_utils.py", "update")] + FORWARD,
        "weights": [fr("/sp/torch/nn/modules/module.py", "to")] + [fr("/workspace/train.py", "main")],
        "optimizer_temporaries": [fr("/sp/torch/optim/adamw.py", "_multi_tensor_adamw")] + ADAM[-4:],
        "zero3_gathered_params": [fr("/sp/deepspeed/runtime/zero/partition_parameters.py", "_all_gather")],
        "gradients": [fr("??", "torch::autograd::AccumulateGrad::apply(...)")],
    }
    for component, stack in cases.items():
        s = load_snapshot(dumps(build([(10 * MiB, stack)])), name=component)
        assert s.held(component) == 10 * MiB, (component, s.components)
    # a word in a directory name is not a site: /workspace/ is no cuBLAS workspace
    s = load_snapshot(dumps(build([(10 * MiB, UNKNOWN)])), name="u")
    assert s.held(UNATTRIBUTED) == 10 * MiB and s.top_sites[0].site == "/workspace/train.py:12 make_buffers"


def test_device_is_chosen_and_others_listed():
    raw = build([(GiB, WEIGHTS)], device=1, oom=(GiB, 0, LOSS))
    raw["segments"] += build([(2 * GiB, FORWARD)], device=0)["segments"]
    s = load_snapshot(dumps(raw), name="two")
    assert s.device == 1 and s.other_devices == [0] and s.held("weights") == GiB
    s0 = load_snapshot(dumps(raw), name="two", device=0)
    assert s0.held("activations") == 2 * GiB and s0.at == "snapshot"


def test_caller_request_when_no_oom_recorded():
    s = load_snapshot(dumps(llama_snapshot(oom=None)), name="c", requested_bytes=3 * GiB,
                      device_total_bytes=80 * GiB)
    assert s.requested_bytes == 3 * GiB and s.device_total_bytes == 80 * GiB


_stacks = st.sampled_from([WEIGHTS, ADAM, FORWARD, LOSS, ATTENTION, BACKWARD_STACK, UNKNOWN, []])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=512, max_value=8 * GiB), _stacks), max_size=30),
       st.integers(min_value=0, max_value=64 * MiB), st.booleans())
def test_components_always_sum_to_reserved(parts, free, with_oom):
    raw = build(parts, free_per_segment=free, oom=(GiB, 0, LOSS) if with_oom else None)
    snap = read_snapshot(raw, name="h")
    a = attribute(snap)
    assert sum(c.bytes for c in a.components) == a.reserved_bytes
    assert a.get(FRAGMENTATION) >= 0
    assert a.allocated_bytes == sum(size for size, _ in parts)


def test_predictions_kept_by_the_trainers_evaluation_loop_are_eval_accumulated():
    """HF Trainer's evaluation loop concatenates every batch's logits on the GPU until eval_accumulation_steps moves
    them to the host (trainer_pt_utils.nested_concat): those blocks are the eval_accumulated component."""
    from .test_snapshot_builders import ALLOC_CPP, SP, WEIGHTS, build, fr

    from ask_oom.tools.snapshot import load_snapshot

    concat = ALLOC_CPP + [fr(f"{SP}/transformers/trainer_pt_utils.py", "torch_pad_and_concatenate", 80),
                          fr(f"{SP}/transformers/trainer_pt_utils.py", "nested_concat", 120),
                          fr(f"{SP}/transformers/trainer.py", "evaluation_loop", 4200)]
    data = build([(2 << 30, WEIGHTS), (3 << 30, concat)], oom=(1 << 30, 1 << 28, concat))
    s = load_snapshot(__import__("pickle").dumps(data), name="rank0.pickle", rank=0)
    held = {c.name: c.bytes for c in s.components}
    assert held["eval_accumulated"] == 3 << 30 and held["weights"] == 2 << 30
