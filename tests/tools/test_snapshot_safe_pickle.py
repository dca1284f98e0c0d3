"""Snapshot files are read as plain data only: code in a pickle never runs, bad input is one InputError line."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import pickletools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ask_oom.tools.errors import InputError
from ask_oom.tools.snapshot import load_snapshot, safe_pickle
from ask_oom.tools.snapshot.safe_pickle import REFUSED_OPCODES, check_opcodes, load_plain

from .test_snapshot_builders import dumps, llama_snapshot


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


class _State:
    def __init__(self):
        self.x = 1


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_os_system_refused_and_never_run(tmp_path, protocol):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"segments": [_System(marker)]}, protocol=protocol)
    with pytest.raises(InputError) as err:
        load_snapshot(data, name="rank0.pickle", rank=0)
    msg = _one_line(err)
    assert msg.startswith("snapshot rank0.pickle: refused: the pickle asks to build a '")
    assert "system' object" in msg and "plain data" in msg
    assert not marker.exists()


def test_find_class_refuses_even_without_the_scan(tmp_path):
    """The second line of defence: the unpickler itself builds no object whatever opcodes it meets."""
    marker = tmp_path / "pwned"
    data = pickle.dumps(_System(marker), protocol=4)
    with pytest.raises(InputError):
        safe_pickle._PlainUnpickler(data, "x").load()
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_builtins_eval_refused(protocol):
    with pytest.raises(InputError) as err:
        load_plain(pickle.dumps([_Eval()], protocol=protocol), name="e.pickle")
    assert "builtin" in _one_line(err) and ".eval' object" in str(err.value)


def test_object_with_state_refused():
    with pytest.raises(InputError) as err:
        load_plain(pickle.dumps(_State(), protocol=2), name="s.pickle")
    assert "_State" in _one_line(err)


@pytest.mark.parametrize("body, word", [
    (b"]}b", "BUILD"),                 # EMPTY_LIST, EMPTY_DICT, BUILD: no GLOBAL at all
    (b"])\x81", "NEWOBJ"),             # EMPTY_LIST as the "class", EMPTY_TUPLE, NEWOBJ
    (b"])}\x92", "NEWOBJ_EX"),
    (b"])R", "REDUCE"),
    (b"(]o", "OBJ"),
    (b"\x82\x01", "EXT1"),
    (b"Pfoo\n", "PERSID"),
    (b"]Q", "BINPERSID"),
])
def test_object_building_opcodes_refused_without_a_global(body, word):
    data = b"\x80\x04" + body + b"."
    with pytest.raises(InputError) as err:
        load_plain(data, name="h.pickle")
    msg = _one_line(err)
    assert "refused" in msg and (word in msg or "object" in msg)


def test_refused_set_covers_the_brief():
    assert {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "REDUCE", "BUILD", "EXT1", "EXT2",
            "EXT4", "PERSID", "BINPERSID"} <= REFUSED_OPCODES


def test_truncated_pickle():
    data = dumps(llama_snapshot())
    for cut in (len(data) - 1, len(data) // 2, 3):
        with pytest.raises(InputError) as err:
            load_snapshot(data[:cut], name="t.pickle")
        assert "t.pickle" in _one_line(err)


@pytest.mark.parametrize("obj", [[1, 2], "segments", 3, None, (1,)])
def test_non_dict_top_level(obj):
    with pytest.raises(InputError) as err:
        load_snapshot(pickle.dumps(obj), name="l.pickle")
    assert "top level" in _one_line(err)


def test_dict_that_is_not_a_snapshot():
    with pytest.raises(InputError) as err:
        load_snapshot(pickle.dumps({"a": 1}), name="d.pickle")
    assert "not a PyTorch memory snapshot" in _one_line(err)


def test_over_size(monkeypatch):
    data = dumps(llama_snapshot())
    monkeypatch.setattr(safe_pickle, "MAX_SNAPSHOT_BYTES", len(data) - 1)
    with pytest.raises(InputError) as err:
        load_snapshot(data, name="big.pickle")
    assert "larger than" in _one_line(err)
    with pytest.raises(InputError):
        load_snapshot(gzip.compress(data), name="big.pickle.gz")   # the limit holds after decompressing too


def test_json_bytes_str_and_gzip_read_alike():
    snap = llama_snapshot()
    want = load_snapshot(dumps(snap), name="a", rank=1)
    as_json = json.dumps(snap)   # tuples become lists, as converting tools write them
    for data in (as_json, as_json.encode(), b"\xef\xbb\xbf" + as_json.encode(), gzip.compress(as_json.encode()),
                 gzip.compress(dumps(snap, 2))):
        got = load_snapshot(data, name="a", rank=1)
        assert got.components == want.components
        assert got.reserved_bytes == want.reserved_bytes


@pytest.mark.parametrize("data", [b"", b"   ", b"{not json", "plain text", b"\x1f\x8bjunk", 12])
def test_garbage_is_one_line(data):
    with pytest.raises(InputError) as err:
        load_snapshot(data, name="g")
    _one_line(err)


def test_deep_nesting_is_refused_not_crashed():
    with pytest.raises(InputError):
        load_snapshot("[" * 100_000 + "]" * 100_000, name="deep.json")
    deep = b"\x80\x04" + b"]" * 200_000 + b"a" * 199_999 + b"."
    try:
        load_plain(deep, name="deep.pickle")
    except InputError:
        pass


_plain = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=150, deadline=None)
@given(_plain, st.sampled_from([2, 3, 4, 5]))
def test_plain_data_round_trips(obj, protocol):
    assert load_plain(pickle.dumps(obj, protocol=protocol), name="p") == obj


@settings(max_examples=60, deadline=None)
@given(_plain, st.sampled_from([0, 2, 4]))
def test_scanner_agrees_with_genops(obj, protocol):
    """The fast opcode walk accepts exactly what pickletools.genops reads without a refused opcode."""
    data = pickle.dumps(obj, protocol=protocol)
    names = {op.name for op, _, _ in pickletools.genops(data)}
    if names & REFUSED_OPCODES:
        with pytest.raises(InputError):
            check_opcodes(data, name="p")
    else:
        check_opcodes(data, name="p")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_input_error(data):
    with pytest.raises(InputError):
        load_snapshot(data, name="r")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_after_a_protocol_header(data):
    try:
        load_snapshot(b"\x80\x04" + data, name="r")
    except InputError:
        pass


def test_refusal_names_are_one_printable_line():
    # SHORT_BINUNICODE "os\nx", SHORT_BINUNICODE "sys\ntem", STACK_GLOBAL
    data = b"\x80\x04\x8c\x04os\nx\x8c\x07sys\ntem\x93."
    with pytest.raises(InputError) as err:
        load_plain(data, name="n.pickle")
    assert "'os?x.sys?tem'" in _one_line(err)
