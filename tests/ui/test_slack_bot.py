"""The Slack bot tested as Slack uses it: signed Events API POSTs over loopback to the running app (uvicorn),
Web API calls going to a local Slack API server that records them. The conversation behind it is the real one."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ask_oom.assistant.settings import Settings

from .slack_api_server import SlackAPIServer

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token-never-logged"
SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign(body: bytes, ts: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    base = f"v0:{ts}:".encode() + body
    sig = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig}


@pytest.fixture(scope="module")
def slack_bot(tmp_path_factory):
    """The bot in HTTP mode on a free loopback port, its Web API pointed at the local Slack server; also yields
    the conversation behind it (to read a thread's session)."""
    import uvicorn

    from ask_oom.ui.serve import make_conversation
    from ask_oom.ui.slack_bot import create_app, http_asgi_app

    api = SlackAPIServer().start()
    settings = Settings(slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=api.api_url,
                        session_db=tmp_path_factory.mktemp("slack") / "sessions.sqlite3")
    conversation = make_conversation(settings)
    app = create_app(conversation, settings, can_probe=False)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(http_asgi_app(app), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield api, f"http://127.0.0.1:{port}/slack/events", conversation
    server.should_exit = True
    thread.join(timeout=10)
    api.stop()


@pytest.fixture
def slack(slack_bot):
    api, url, _conversation = slack_bot
    return api, url


_counter = iter(range(1, 10_000))


def event_body(event: dict) -> bytes:
    n = next(_counter)
    return json.dumps({"token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
                       "event_id": f"Ev{n:05d}", "event_time": int(time.time()), "event": event}).encode()


def post_event(url: str, event: dict, headers: dict | None = None) -> tuple[httpx.Response, bytes]:
    body = event_body(event)
    h = {"Content-Type": "application/json", **sign(body), **(headers or {})}
    return httpx.post(url, content=body, headers=h, timeout=10), body


def mention(text: str, ts: str, channel: str = "C1", files: list | None = None) -> dict:
    ev = {"type": "app_mention", "user": "U1", "text": f"<@UBOT> {text}", "ts": ts, "channel": channel}
    if files:
        ev["files"] = files
    return ev


def replies_in(api: SlackAPIServer, thread_ts: str) -> list[dict]:
    return [c for c in api.posted() if c.get("thread_ts") == thread_ts]


def wait_replies(api: SlackAPIServer, thread_ts: str, n: int = 1, timeout: float = 90) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = replies_in(api, thread_ts)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    raise TimeoutError(f"no reply in thread {thread_ts}")


def seed_log(name: str = "moe-llava-phi2") -> str:
    return (SEEDS / name / "train.log").read_text(encoding="utf-8")


def test_mention_gets_threaded_diagnosis_with_buttons(slack):
    api, url = slack
    t0 = time.time()
    resp, _ = post_event(url, mention(seed_log(), ts="1700000001.000100"))
    assert resp.status_code == 200
    assert time.time() - t0 < 3.0, "Slack needs the ack within 3 seconds"
    (reply,) = wait_replies(api, "1700000001.000100")
    assert reply["channel"] == "C1"
    blocks = json.loads(reply["blocks"]) if isinstance(reply["blocks"], str) else reply["blocks"]
    text = json.dumps(blocks)
    assert "Primary cause" in text
    actions = [b for b in blocks if b["type"] == "actions"][0]["elements"]
    assert {a["action_id"] for a in actions} >= {"ask_oom_why", "ask_oom_solved"}
    assert "ask_oom_probe" not in {a["action_id"] for a in actions}  # no GPU on this host
    assert TOKEN not in json.dumps(api.calls)  # the token travels only in the Authorization header


def test_retries_are_acknowledged_but_not_answered_twice(slack):
    api, url = slack
    ev = mention(seed_log(), ts="1700000002.000100")
    body = event_body(ev)
    first = httpx.post(url, content=body, headers={"Content-Type": "application/json", **sign(body)}, timeout=10)
    retry = httpx.post(url, content=body, headers={"Content-Type": "application/json", **sign(body),
                                                     "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}, timeout=10)
    assert first.status_code == 200 and retry.status_code == 200
    wait_replies(api, "1700000002.000100")
    time.sleep(2.0)  # a duplicate answer would have been posted by now
    assert len(replies_in(api, "1700000002.000100")) == 1


@pytest.mark.parametrize("headers", [
    {"X-Slack-Signature": "v0=" + "0" * 64},
    "stale",
])
def test_bad_or_stale_signatures_are_rejected(slack, headers):
    api, url = slack
    body = event_body(mention("hello", ts="1700000003.000100"))
    if headers == "stale":
        headers = sign(body, ts=int(time.time()) - 600)
    else:
        headers = {**sign(body), **headers}
    resp = httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers}, timeout=10)
    assert resp.status_code == 401
    time.sleep(0.5)
    assert not replies_in(api, "1700000003.000100")


def test_attached_config_is_read_and_fixed_config_returned(slack):
    api, url = slack
    cfg_dir = SEEDS / "moe-llava-phi2"
    api.files["finetune_moe.sh"] = (cfg_dir / "finetune_moe.sh").read_bytes()
    files = [{"id": "F1", "name": "finetune_moe.sh", "size": len(api.files["finetune_moe.sh"]),
              "url_private_download": api.base_url + "files/finetune_moe.sh"}]
    post_event(url, mention(seed_log(), ts="1700000004.000100", files=files))
    (reply,) = wait_replies(api, "1700000004.000100")
    assert f"Bearer {TOKEN}" in api.auth_headers  # downloaded with the bot token
    uploads = [c for c in api.posted("files.completeUploadExternal") if c.get("thread_ts") == "1700000004.000100"]
    everything = json.dumps(reply) + json.dumps(uploads) + "".join(v.decode(errors="replace") for v in api.uploads.values())
    assert "per_device_train_batch_size" in everything and "gradient_accumulation_steps" in everything


def test_follow_up_in_thread_is_answered_and_unknown_threads_ignored(slack):
    api, url = slack
    post_event(url, mention(seed_log(), ts="1700000005.000100"))
    wait_replies(api, "1700000005.000100")
    post_event(url, {"type": "message", "user": "U1", "text": "why?", "ts": "1700000005.000200",
                     "thread_ts": "1700000005.000100", "channel": "C1", "channel_type": "channel"})
    replies = wait_replies(api, "1700000005.000100", n=2)
    assert len(replies) == 2
    post_event(url, {"type": "message", "user": "U1", "text": "unrelated chatter", "ts": "1700000006.000200",
                     "thread_ts": "1700000006.000100", "channel": "C1", "channel_type": "channel"})
    time.sleep(1.5)
    assert not replies_in(api, "1700000006.000100")


def click(url: str, action_id: str, thread_ts: str, message_ts: str, channel: str = "C1") -> httpx.Response:
    """A signed block_actions POST, as Slack sends it when a user clicks a button of the bot's message."""
    payload = {"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T1"}, "api_app_id": "A1",
               "channel": {"id": channel}, "container": {"type": "message", "message_ts": message_ts},
               "message": {"ts": message_ts, "thread_ts": thread_ts},
               "trigger_id": "1.2.3", "actions": [{"action_id": action_id, "block_id": "ask_oom_actions",
                                                   "value": "x", "type": "button"}]}
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    return httpx.post(url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded", **sign(body)}, timeout=10)


def reply_text(reply: dict) -> str:
    """A posted message's fallback text and blocks, as one string (unicode kept)."""
    return str(reply.get("text") or "") + json.dumps(reply.get("blocks"), ensure_ascii=False)


def buttons_of(reply: dict) -> set[str]:
    blocks = json.loads(reply["blocks"]) if isinstance(reply["blocks"], str) else reply["blocks"]
    return {e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]}


def test_solved_button_is_acknowledged_and_recorded(slack):
    api, url = slack
    post_event(url, mention(seed_log(), ts="1700000007.000100"))
    wait_replies(api, "1700000007.000100")
    resp = click(url, "ask_oom_solved", "1700000007.000100", "1700000007.000900")
    assert resp.status_code == 200
    replies = wait_replies(api, "1700000007.000100", n=2)
    assert "solved" in json.dumps(replies[-1]).lower()


def test_buttons_in_a_chinese_thread_answer_in_chinese(slack_bot):
    api, url, conversation = slack_bot
    thread = "1700000010.000100"
    post_event(url, mention("训练时显存不足，帮我看看：\n" + seed_log(), ts=thread))
    wait_replies(api, thread)
    assert conversation.store.get(f"slack:C1:{thread}").state.language == "zh"
    assert click(url, "ask_oom_solved", thread, "1700000010.000900").status_code == 200
    solved = wait_replies(api, thread, n=2)[-1]
    assert "已标记为*已解决*" in reply_text(solved) and "Glad it works" not in reply_text(solved)
    click(url, "ask_oom_unsolved", thread, "1700000010.000900")
    unsolved = wait_replies(api, thread, n=3)[-1]
    assert "ask_oom_solved" in buttons_of(unsolved)               # re-planned with more headroom: a new diagnosis
    state = conversation.store.get(f"slack:C1:{thread}").state
    assert state.language == "zh" and [f.solved for f in state.feedback] == [True, False]
    assert [t.text for t in state.history if t.role == "user"][-2:] == ["解决了", "还是OOM"]


@pytest.mark.parametrize("action_id, words", [("ask_oom_why", "why?"), ("ask_oom_show_diff", "show the diff again"),
                                              ("ask_oom_unsolved", "still OOM"), ("ask_oom_solved", "it worked")])
def test_each_button_answers_as_its_english_words_do(slack, action_id, words):
    """Two threads with the same log and config: a button clicked in one, its words sent in the other."""
    api, url = slack
    cfg = (SEEDS / "moe-llava-phi2" / "finetune_moe.sh").read_bytes()
    api.files["finetune_moe.sh"] = cfg
    files = [{"id": "F1", "name": "finetune_moe.sh", "size": len(cfg), "url_private_download": api.base_url + "files/finetune_moe.sh"}]
    n = next(_counter)
    clicked, typed = f"1700002{n:03d}.000100", f"1700003{n:03d}.000100"
    for thread in (clicked, typed):
        post_event(url, mention(seed_log(), ts=thread, files=files))
    first = wait_replies(api, clicked)[0]
    wait_replies(api, typed)
    assert {"ask_oom_why", "ask_oom_show_diff", "ask_oom_solved", "ask_oom_unsolved"} <= buttons_of(first)
    click(url, action_id, clicked, clicked[:-1] + "9")
    post_event(url, {"type": "message", "user": "U1", "text": words, "ts": typed[:-1] + "2",
                     "thread_ts": typed, "channel": "C1", "channel_type": "channel"})
    by_click, by_words = wait_replies(api, clicked, n=2)[-1], wait_replies(api, typed, n=2)[-1]
    same = json.loads(json.dumps(by_click).replace(clicked, typed))     # each names its own session (kb ingest)
    assert same["blocks"] == by_words["blocks"] and same["text"] == by_words["text"]
    if action_id == "ask_oom_solved":
        assert f"--session slack:C1:{typed}" in reply_text(by_words) and "<id>" not in reply_text(by_words)
    if action_id == "ask_oom_show_diff":
        assert "```" in reply_text(by_click) and "per_device_train_batch_size" in reply_text(by_click)


def test_unknown_button_gets_a_clear_answer(slack):
    api, url = slack
    thread = "1700000011.000100"
    post_event(url, mention(seed_log(), ts=thread))
    wait_replies(api, thread)
    resp = click(url, "ask_oom_teleport", thread, "1700000011.000900")
    assert resp.status_code == 200
    answer = reply_text(wait_replies(api, thread, n=2)[-1])
    assert "ask_oom_teleport" in answer and "do not know the button" in answer and "nothing was changed" in answer


def test_twenty_concurrent_threads_do_not_mix(slack):
    """Twenty conversations at once, each with its own model: every thread's answer names its own model."""
    api, url = slack
    models = [f"model-{i:02d}" for i in range(20)]
    template = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {n}.00 MiB. GPU 0 has a total capacity "
                "of 79.18 GiB of which 10.00 MiB is free. Including non-PyTorch memory, this process has 79.16 GiB memory "
                "in use. Of the allocated memory 77.00 GiB is allocated by PyTorch, and 1.20 GiB is reserved by PyTorch "
                "but unallocated.")
    def send(i: int):
        return post_event(url, mention(template.format(n=100 + i), ts=f"1700001{i:03d}.000100"))[0].status_code
    with ThreadPoolExecutor(max_workers=20) as pool:
        assert set(pool.map(send, range(20))) == {200}
    for i in range(20):
        (reply,) = wait_replies(api, f"1700001{i:03d}.000100", timeout=180)
        assert f"{100 + i}.00 MiB" in json.dumps(reply)
        for j in (i - 1, i + 1):
            if 0 <= j < 20:
                assert f"{100 + j}.00 MiB" not in json.dumps(reply)


def _slack_escaped(text: str) -> str:
    """Text as Slack's Events API delivers it: &, < and > escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


SEED_PASTES = [(seed, fence) for seed in ("moe-llava-phi2", "deepke-llama2-13b", "kimi-vl-a3b", "qwen2.5-32b", "qwen2.5-vl-7b")
               for fence in ("```", "```yaml")]


def test_a_log_pasted_above_a_fenced_config_is_diagnosed_with_that_config(slack_bot):
    """A log pasted unfenced above a fenced config used to be read as chat ("No memory error found"): each seed's log
    and config in one Slack message now give a diagnosis of that log with that config."""
    api, url, conversation = slack_bot
    sent = []
    for i, (seed, fence) in enumerate(SEED_PASTES):
        exp = json.loads((SEEDS / seed / "expected.json").read_text(encoding="utf-8"))
        config = (SEEDS / seed / exp["config"]).read_text(encoding="utf-8")
        ts = f"17000030{i:02d}.000100"
        post_event(url, mention(_slack_escaped(f"{seed_log(seed)}\n{fence}\n{config}```\nwhy does it run out?"), ts=ts))
        sent.append((ts, config))
    for ts, config in sent:
        (reply,) = wait_replies(api, ts, timeout=180)
        assert "No memory error" not in reply_text(reply) and "No out-of-memory" not in reply_text(reply)
        state = conversation.store.get(f"slack:C1:{ts}").state
        assert state.diagnosis is not None and state.diagnosis.report.is_memory_error
        assert config in state.configs.values() and state.diagnosis.config is not None


def test_slack_escaping_is_undone_once_at_the_door(slack_bot):
    """`&&` in a pasted script arrives as `&amp;&amp;`; the fixed config must carry `&&` (and a `&lt;` the user really
    typed, sent as `&amp;lt;`, stays `&lt;`)."""
    api, url, conversation = slack_bot
    script = (SEEDS / "moe-llava-phi2" / "finetune_moe.sh").read_text(encoding="utf-8").replace(
        "cd ~/MoE-LLaVA\n", "cd ~/MoE-LLaVA && mkdir -p logs  # keep &lt; as typed\n")
    ts = "1700004001.000100"
    post_event(url, mention(_slack_escaped(f"{seed_log()}\n```\n{script}```"), ts=ts))
    (reply,) = wait_replies(api, ts, timeout=180)
    state = conversation.store.get(f"slack:C1:{ts}").state
    (config,) = [t for t in state.configs.values() if "deepspeed" in t and "moellava" in t]
    assert config == script and "&amp;" not in config
    fixed = state.diagnosis.fixed_config
    assert "cd ~/MoE-LLaVA && mkdir -p logs  # keep &lt; as typed" in fixed and "&amp;" not in fixed
    uploads = "".join(v.decode(errors="replace") for v in api.uploads.values())   # files: raw text, never escaped
    assert "&amp;" not in uploads and "&amp;amp;" not in reply_text(reply)     # messages: escaped once, for Slack


def test_skipped_attachments_are_named_with_why(slack):
    """Each attachment not read gets one line in the reply: too large, binary, unsupported type, download failed."""
    api, url = slack
    thread = "1700000030.000100"
    api.files["binary.log"] = bytes(range(256)) * 8
    api.files["big.txt"] = b"x" * (2 * 1024 * 1024 + 10)   # the metadata says small: the download finds it too large
    files = [
        {"id": "F1", "name": "huge.log", "size": 50 * 1024 * 1024, "url_private_download": api.base_url + "files/huge.log"},
        {"id": "F2", "name": "binary.log", "size": 2048, "url_private_download": api.base_url + "files/binary.log"},
        {"id": "F3", "name": "screenshot.png", "size": 1000, "url_private_download": api.base_url + "files/screenshot.png"},
        {"id": "F4", "name": "gone.yaml", "size": 100, "url_private_download": api.base_url + "files/gone.yaml"},
        {"id": "F5", "name": "big.txt", "size": 100, "url_private_download": api.base_url + "files/big.txt"},
    ]
    post_event(url, mention(seed_log(), ts=thread, files=files))
    (reply,) = wait_replies(api, thread)
    text = reply_text(reply)
    lines = [ln for ln in str(reply.get("text") or "").splitlines() if ln.startswith("Skipped attachment")]
    assert len(lines) == 5, text[:600]
    by_name = {re.search(r"`([^`]+)`", ln).group(1): ln for ln in lines}
    assert "larger than the 2 MiB limit" in by_name["huge.log"] and "larger than" in by_name["big.txt"]
    assert "binary" in by_name["binary.log"]
    assert "unsupported type" in by_name["screenshot.png"]
    assert "download failed (HTTP 404)" in by_name["gone.yaml"]
    assert "Primary cause" in text            # the log in the message is still diagnosed


def test_only_skipped_attachments_get_just_those_lines(slack):
    api, url = slack
    thread = "1700000031.000100"
    files = [{"id": "F1", "name": "photo.jpg", "size": 10, "url_private_download": api.base_url + "files/photo.jpg"}]
    post_event(url, mention("", ts=thread, files=files))
    (reply,) = wait_replies(api, thread)
    assert reply_text(reply).startswith("Skipped attachment `photo.jpg`: unsupported type")


def test_a_chinese_thread_gets_a_chinese_slack_summary(slack_bot):
    api, url, conversation = slack_bot
    thread = "1700000032.000100"
    post_event(url, mention("训练时显存不足，帮我看看：\n" + seed_log(), ts=thread,
                            files=[{"id": "F1", "name": "a.png", "size": 1, "url_private_download": api.base_url + "files/a.png"}]))
    (reply,) = wait_replies(api, thread)
    text = reply_text(reply)
    assert "*主要原因：*" in text and "Primary cause" not in text
    assert "跳过了附件 `a.png`" in text
    labels = {e["text"]["text"] for b in (json.loads(reply["blocks"]) if isinstance(reply["blocks"], str) else reply["blocks"])
              if b["type"] == "actions" for e in b["elements"]}
    assert "为什么？" in labels and "Why?" not in labels


def test_a_paste_in_slack_diagnoses_like_the_two_files_on_the_command_line(slack_bot, tmp_path, capsys):
    """Log and config in one Slack message give the diagnosis `ask-oom diagnose LOG --config FILE` gives: the same
    primary cause, the same changes, the same fixed config and verdict."""
    from ask_oom.ui.cli import main

    api, url, conversation = slack_bot
    for i, seed in enumerate(("moe-llava-phi2", "deepke-llama2-13b", "qwen2.5-vl-7b")):
        exp = json.loads((SEEDS / seed / "expected.json").read_text(encoding="utf-8"))
        config_path = SEEDS / seed / exp["config"]
        log_path = tmp_path / f"{seed}.log"
        log_path.write_text(seed_log(seed), encoding="utf-8")
        assert main(["diagnose", str(log_path), "--config", str(config_path), "--json", "--allow-symlinks"]) == 0
        cli = json.loads(capsys.readouterr().out)
        ts = f"17000050{i:02d}.000100"
        config = config_path.read_text(encoding="utf-8")
        post_event(url, mention(_slack_escaped(f"{seed_log(seed)}\n```\n{config}```"), ts=ts))
        wait_replies(api, ts, timeout=180)
        d = conversation.store.get(f"slack:C1:{ts}").state.diagnosis
        assert d.primary_cause == cli["primary_cause"], seed
        assert [(c.key, c.to_value) for c in d.fixes] == [(c["key"], c["to_value"]) for c in cli["fixes"]], seed
        assert d.fixed_config == cli["fixed_config"] and d.fits_after == cli["fits_after"], seed


def test_a_switched_deepspeed_config_is_attached_under_the_name_the_fix_points_at(slack_bot):
    """The fixed DeepSpeed config is attached to the thread under the file name the fixed config refers to."""
    api, url, conversation = slack_bot
    seed = SEEDS / "qwen2.5-32b"
    files = []
    for name in ("train.yaml", "ds_z3_offload_config.json"):
        api.files[name] = (seed / name).read_bytes()
        files.append({"id": f"F-{name}", "name": name, "size": len(api.files[name]),
                      "url_private_download": api.base_url + "files/" + name})
    ts = "1700000061.000100"
    post_event(url, mention(seed_log("qwen2.5-32b") + "\nwe have one H100 96GB", ts=ts, files=files))
    wait_replies(api, ts, timeout=180)
    d = conversation.store.get(f"slack:C1:{ts}").state.diagnosis
    assert d.fixed_deepspeed and d.fixed_deepspeed_name in d.fixed_config     # the fixed config points at it
    deadline = time.time() + 60   # the files follow the reply message
    while True:
        names = [c.get("filename") for c in api.posted("files.getUploadURLExternal")]
        if d.fixed_deepspeed_name in names or time.time() > deadline:
            break
        time.sleep(0.1)
    assert d.fixed_deepspeed_name in names and "ds_config.fixed.json" not in names, names


def test_a_follow_up_that_replans_shows_what_changed_not_the_summary_again(slack):
    """A what-if in the thread re-plans: the reply is the new estimate and diff (the turn's answer), with the buttons,
    not the first answer's summary repeated."""
    api, url = slack
    ts = "1700000071.000100"
    post_event(url, mention(seed_log(), ts=ts))
    (first,) = wait_replies(api, ts)
    post_event(url, {"type": "message", "user": "U1", "text": "what if cutoff_len is 1024?", "ts": "1700000071.000200",
                     "thread_ts": ts, "channel": "C1", "channel_type": "channel"})
    replies = wait_replies(api, ts, n=2)
    follow = reply_text(replies[1])
    assert "New estimate" in follow or "Updated" in follow, follow[:400]
    assert "Most likely cause" not in follow and "Not sure yet" not in follow, follow[:400]
    assert any(b.get("type") == "actions" for b in replies[1].get("blocks") or [])      # the buttons stay
