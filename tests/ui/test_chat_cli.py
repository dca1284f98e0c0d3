"""`ask-oom chat`: one turn per call for scripts (--json), the session kept across processes in the shared store, the
public state vocabulary (assistant/chat_state), bad input as one line with exit 2, and the terminal's paste reader."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "ui" / "examples"
ATTACH = [EXAMPLES / "moe-llava-phi2.log", EXAMPLES / "moe-llava-phi2.sh", EXAMPLES / "zero2.json"]
CJK = re.compile(r"[\u4e00-\u9fff]")
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("ASK_OOM_")}, "HF_HUB_OFFLINE": "1"}  # no LLM


def chat(store: Path, message: str, *args: str, cwd: Path | None = None) -> tuple[int, dict | None, str]:
    """One `ask-oom chat --json` process: (exit code, the JSON object or None, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "ask_oom.ui.cli", "chat", "--json", "--store-dir", str(store), *args],
                          input=message.encode(), capture_output=True, timeout=180, cwd=cwd or REPO,
                          env=ENV)
    out = proc.stdout.decode()
    return proc.returncode, (json.loads(out) if out.strip() else None), proc.stderr.decode()


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    """A conversation over several processes: the log and configs first, then follow-ups; every turn's object."""
    store = tmp_path_factory.mktemp("chat-store")
    attach = [a for path in ATTACH for a in ("--attach", str(path))]
    code, first, err = chat(store, "", *attach)
    assert code == 0, err
    sid = first["session"]
    turns = {"first": first}
    for key, message in (("hardware", "we have 4x A100 40GB"), ("keep", "keep the sequence length"),
                         ("what_if", "what if zero 3"), ("thanks", "thanks"), ("zh", "为什么会OOM？")):
        code, obj, err = chat(store, message, "--session", sid)
        assert code == 0, (message, err, obj)
        turns[key] = obj
    return store, sid, turns


def test_first_turn_with_a_log_has_the_diagnose_json_and_a_new_session(conversation):
    _, sid, turns = conversation
    first = turns["first"]
    assert re.fullmatch(r"[0-9a-f]{32}", sid)   # the web UI's own id form: ?session=ID opens it there too
    assert set(first) >= {"session", "reply", "language", "state", "diagnosis"}
    assert first["language"] == "en" and first["error"] is None
    d = first["diagnosis"]
    assert d["primary_cause"] == "batch_too_large" and d["schema_version"] >= 1
    assert {"report", "setup", "estimate", "root_causes", "fixes", "fixed_config", "diff"} <= set(d)
    assert all(c["meaning"] for c in d["root_causes"])   # the same object `diagnose --json` prints (render_json)
    assert first["reply"].startswith("# ask-oom diagnosis")
    assert first["state"] == {"gpus": None, "nodes": None, "gpu_memory_gib": None, "gpu_name": None, "host_ram_gib": None,
                              "what_if": {}, "keep": [], "last_intent": "other"}


def test_follow_ups_update_the_public_state_across_processes(conversation):
    _, sid, turns = conversation
    hw = turns["hardware"]["state"]
    assert (hw["gpus"], hw["gpu_memory_gib"], hw["last_intent"]) == (4, 40, "hardware")
    assert hw["gpu_name"] == "A100-40GB"
    assert turns["hardware"]["session"] == sid and turns["hardware"]["diagnosis"] is not None
    keep = turns["keep"]["state"]
    assert keep["keep"] == ["seq_len"] and keep["last_intent"] == "constraint" and keep["gpus"] == 4
    wi = turns["what_if"]["state"]
    assert wi["what_if"] == {"zero_stage": 3} and wi["last_intent"] == "what_if" and wi["keep"] == ["seq_len"]
    thanks = dict(turns["thanks"]["state"])
    assert thanks.pop("last_intent") == "other"
    assert thanks == {k: v for k, v in wi.items() if k != "last_intent"}   # "thanks" changes nothing


def test_a_chinese_message_gets_a_chinese_reply(conversation):
    _, _, turns = conversation
    zh = turns["zh"]
    assert zh["language"] == "zh" and zh["state"]["last_intent"] == "why"
    first_line = zh["reply"].splitlines()[0]
    assert CJK.search(first_line), zh["reply"][:200]
    assert turns["thanks"]["language"] == "en"


def test_chat_turn_is_the_json_path(conversation, tmp_path):
    """The function an evaluation calls returns the object the command prints, on the same store."""
    from ask_oom.ui.cmd_chat import chat_turn

    store, sid, _ = conversation
    out = chat_turn(store, sid, "the machine has 512 GB RAM", [])
    assert out["session"] == sid and out["state"]["host_ram_gib"] == 512 and out["state"]["last_intent"] == "host_ram"
    assert out["state"]["what_if"] == {"zero_stage": 3} and out["diagnosis"]["primary_cause"]
    fresh = chat_turn(tmp_path, None, "help", [])
    assert fresh["session"] != sid and fresh["diagnosis"] is None and fresh["state"]["last_intent"] == "other"


def test_public_state_vocabularies():
    from ask_oom.assistant.chat_state import (INTENT_PUBLIC, INTENT_VOCABULARY, KEEP_PUBLIC, KEEP_VOCABULARY, STATE_KEYS,
                                              public_state)
    from ask_oom.assistant.intent_types import IntentName
    from ask_oom.assistant.session import SessionState
    from typing import get_args

    assert set(INTENT_PUBLIC.values()) <= set(INTENT_VOCABULARY) and set(INTENT_PUBLIC) <= set(get_args(IntentName))
    assert set(KEEP_PUBLIC.values()) <= set(KEEP_VOCABULARY)
    state = SessionState()
    state.request.keep = ["full", "seq", "batch", "no-deepspeed"]
    state.request.gpu = "H100-80GB"
    state.overrides = {"per_device_train_batch_size": 2}
    state.method = "qlora"
    out = public_state(state, ["set_host_ram"])
    assert tuple(out) == STATE_KEYS
    assert out["keep"] == ["full_finetuning", "seq_len", "batch", "deepspeed"]
    assert out["gpu_memory_gib"] == 80 and out["last_intent"] == "host_ram"
    assert out["what_if"] == {"finetuning_type": "lora", "quantization_bit": 4, "per_device_train_batch_size": 2}
    for name in get_args(IntentName):
        assert public_state(state, [name])["last_intent"] in INTENT_VOCABULARY
    state.add_turn("user", "why?", "explain")
    assert public_state(state, None)["last_intent"] == "why"   # None: the history's last user turn


@pytest.mark.parametrize("case", ["missing", "empty_message", "binary", "symlink"])
def test_bad_input_is_one_line_exit_2(case, tmp_path):
    store = tmp_path / "store"
    args: list[str] = []
    message = "why?"
    if case == "missing":
        args = ["--attach", str(tmp_path / "nope.log")]
    elif case == "empty_message":
        message = "  \n"
    elif case == "binary":
        (tmp_path / "b.log").write_bytes(bytes(range(256)) * 16)
        args = ["--attach", str(tmp_path / "b.log")]
    else:
        (tmp_path / "link.log").symlink_to(ATTACH[0])
        args = ["--attach", str(tmp_path / "link.log")]
    code, obj, err = chat(store, message, *args)
    assert code == 2 and obj is None
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    if case == "symlink":
        assert "symbolic link" in err
        code, obj, err = chat(store, "", *args, "--allow-symlinks")
        assert code == 0 and obj["diagnosis"] is not None, err


def test_the_epilog_documents_the_exit_codes():
    from ask_oom.ui import cmd_chat
    from ask_oom.ui.cli import COMMANDS, EPILOG

    assert COMMANDS["chat"] == "ask_oom.ui.cmd_chat" and "ask-oom chat" in EPILOG
    assert "exit codes: 0" in cmd_chat.EPILOG and "2 bad input" in cmd_chat.EPILOG


def test_a_pasted_log_with_empty_lines_is_one_message():
    """The terminal reader: a typed line is a message; a paste (lines arriving together) runs to an empty line or EOF."""
    from ask_oom.ui.cmd_chat import read_message

    r, w = os.pipe()
    with os.fdopen(r, "r") as reader, os.fdopen(w, "w") as writer:
        writer.write("why?\n")
        writer.flush()
        assert read_message(reader, prompt="") == "why?"
        writer.write("Traceback (most recent call last):\n  File x\n\ntorch.OutOfMemoryError: CUDA out of memory.\n")
        writer.close()
        assert read_message(reader, prompt="") == ("Traceback (most recent call last):\n  File x\n\n"
                                                   "torch.OutOfMemoryError: CUDA out of memory.")
        assert read_message(reader, prompt="") is None


def test_piped_without_json_prints_the_markdown_reply(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ask_oom.ui.cli", "chat", "--store-dir", str(tmp_path)],
                          input=ATTACH[0].read_bytes(), capture_output=True, timeout=180, cwd=REPO,
                          env=ENV)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().startswith("# ask-oom diagnosis")
    assert "--session" in proc.stderr.decode()


def test_a_snapshot_attached_in_a_later_turn_is_reconciled(tmp_path):
    """`--attach rank1.pickle` reads a memory snapshot as plain data; the session's diagnosis then holds it against
    the estimate. A malicious pickle is a one-line exit 2 and runs nothing."""
    sys.path.insert(0, str(REPO / "tests" / "tools"))
    from test_snapshot_builders import dumps, llama_snapshot

    attach = [a for path in ATTACH for a in ("--attach", str(path))]
    code, first, err = chat(tmp_path, "", *attach)
    assert code == 0, err and first["diagnosis"]["reconciliation"] is None
    snap = tmp_path / "rank1.pickle"
    snap.write_bytes(dumps(llama_snapshot()))
    code, obj, err = chat(tmp_path, "here is the memory snapshot", "--session", first["session"], "--attach", str(snap))
    assert code == 0, err
    rec = obj["diagnosis"]["reconciliation"]
    assert [c["rank"] for c in rec["comparisons"]] == [1] and "Memory snapshots" in obj["reply"]
    evil = tmp_path / "rank2.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    code, obj, err = chat(tmp_path, "another one", "--session", first["session"], "--attach", str(evil))
    assert code == 2 and "refused" in err and not (tmp_path / "pwned").exists()


def test_held_bars_stand_beside_the_prediction_without_overlapping_labels():
    from test_chart import _bar_boxes, _overlap, _text_boxes, estimate  # noqa: F401 - the chart tests' geometry

    from ask_oom.ui.chart import memory_chart_svg

    GiB = 1 << 30
    before = estimate(70.0, {"weights": 30, "optimizer_states": 20, "activations": 20}, fits=False)
    held = [(f"held r{r}", {"weights": 30 * GiB, "activations": (20 + 5 * r) * GiB, "fragmentation": 3 * GiB})
            for r in range(3)]
    svg = memory_chart_svg(before, None, 80 * GiB, budget_bytes=70 * GiB, held=held)
    assert "bar-predicted" in svg and all(f"held r{r}" in svg for r in range(3))
    texts, bars = _text_boxes(svg), _bar_boxes(svg)
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            assert not _overlap(a, b), (a, b)


def test_the_terminal_conversation_takes_a_snapshot_attachment(tmp_path):
    """In a terminal (a pseudo-terminal here), `/attach rank0.pickle` is checked as a snapshot, not refused as binary."""
    import pty
    import select
    import time as _time

    sys.path.insert(0, str(REPO / "tests" / "tools"))
    from test_snapshot_builders import dumps, llama_snapshot

    snap = tmp_path / "rank0.pickle"
    snap.write_bytes(dumps(llama_snapshot()))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ask_oom.ui.cli", "chat", "--store-dir", str(tmp_path)],
                            stdin=slave, stdout=slave, stderr=slave, env=ENV, cwd=REPO)
    os.close(slave)
    out = b""

    def read_until(needle: bytes, timeout: float = 60.0) -> None:
        nonlocal out
        deadline = _time.time() + timeout
        while needle not in out and _time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break

    try:
        read_until(b">")
        os.write(master, f"/attach {snap}\n".encode())
        read_until(b"attached rank0.pickle")
        os.write(master, b"/quit\n")
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = out.decode(errors="replace")
    assert "attached rank0.pickle" in text and "binary" not in text, text[-500:]
