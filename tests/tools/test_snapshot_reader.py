"""The documented snapshot format read into typed records: defaults, unknown keys, wrong types, older layouts."""

from __future__ import annotations

import pytest

from ask_oom.tools.errors import InputError
from ask_oom.tools.snapshot import load_plain, read_snapshot

from .test_snapshot_builders import GiB, LOSS, MiB, dumps, fr, llama_snapshot


def test_segments_blocks_frames_and_traces():
    snap = read_snapshot(load_plain(dumps(llama_snapshot()), name="r"), name="r")
    seg = snap.segments[0]
    assert seg.device == 0 and seg.segment_type == "large" and seg.total_size == 512 * MiB + 2 * MiB
    assert seg.allocated_size == 512 * MiB and seg.active_size == 512 * MiB
    assert [b.state for b in seg.blocks] == ["active_allocated", "inactive"]
    assert seg.blocks[1].address == seg.address + 512 * MiB
    assert seg.blocks[0].frames[-1].name == "main" and seg.blocks[0].frames[-1].line == 40
    oom = [e for e in snap.device_traces[0] if e.action == "oom"]
    assert len(oom) == 1 and oom[0].size == 2 * GiB and oom[0].device_free == int(1.2 * GiB)
    assert oom[0].frames[2].name == "cross_entropy"
    assert snap.allocator_settings["expandable_segments"] is False
    assert snap.frames_recorded() and snap.devices() == [0]


def test_shared_frame_lists_are_converted_once():
    snap = read_snapshot(load_plain(dumps(llama_snapshot()), name="r"), name="r")
    firsts = [s.blocks[0].frames for s in snap.segments[:8]]
    assert all(f is firsts[0] for f in firsts)


def test_missing_keys_default_and_unknown_keys_are_ignored():
    raw = {"segments": [{"blocks": [{"size": 1024, "state": "active_allocated", "new_field": {"x": 1}},
                                    {"size": 512}]}],
           "brand_new_top_level": [1, 2, 3]}
    snap = read_snapshot(raw, name="m")
    seg = snap.segments[0]
    assert seg.total_size == 1536 and seg.allocated_size == 1024 and seg.device == 0
    assert seg.blocks[1].state == "inactive" and seg.blocks[1].address == 1024
    assert snap.device_traces == () and snap.allocator_settings == {}
    assert not snap.frames_recorded()


@pytest.mark.parametrize("raw, where", [
    ({"segments": {"a": 1}}, "segments"),
    ({"segments": [[1]]}, "segments[0]"),
    ({"segments": [{"total_size": "big"}]}, "segments[0].total_size"),
    ({"segments": [{"blocks": [{"size": 1, "state": "weird"}]}]}, "segments[0].blocks[0].state"),
    ({"segments": [{"blocks": [{"size": 1, "frames": [{"filename": 3}]}]}]}, "frames[0].filename"),
    ({"segments": [{"blocks": [{"size": True}]}]}, "size"),
    ({"segments": [], "device_traces": [[{"action": "alloc", "size": [1]}]]}, "device_traces[0][0].size"),
    ({"segments": [], "allocator_settings": [1]}, "allocator_settings"),
])
def test_wrong_types_name_the_field(raw, where):
    with pytest.raises(InputError) as err:
        read_snapshot(raw, name="w.pickle")
    assert where in str(err.value) and "\n" not in str(err.value)


def test_older_history_layout_and_state_spelling():
    raw = {"segments": [{"address": 4096, "total_size": 3 * MiB, "blocks": [
        {"size": 2 * MiB, "state": "active_allocated",
         "history": [{"addr": 4096, "real_size": 2 * MiB - 100, "frames": [fr("/x/train.py", "main")]}]},
        {"size": MiB, "state": "active_awaiting_free"}]}]}
    snap = read_snapshot(raw, name="old")
    b0, b1 = snap.segments[0].blocks
    assert b0.frames[0].name == "main" and b0.requested_size == 2 * MiB - 100 and b0.address == 4096
    assert b1.state == "active_pending_free" and b1.address == 4096 + 2 * MiB


def test_oom_without_device_free_key_reads_addr():
    raw = {"segments": [], "device_traces": [[{"action": "oom", "addr": 77, "size": 5, "frames": LOSS}]]}
    e = read_snapshot(raw, name="o").device_traces[0][0]
    assert e.device_free == 77 and e.size == 5
