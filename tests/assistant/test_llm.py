"""The optional LLM path against a local OpenAI-compatible server on loopback (real HTTP, scripted replies):
tool calls then a grounded answer (accepted), wrong numbers (rejected), a slow server (timeout note),
an unreachable endpoint (note), and the Conversation falling back to the deterministic answer."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("llama_index.llms.openai_like")

from ask_oom.assistant.conversation import Conversation  # noqa: E402
from ask_oom.assistant.llm import answer_with_llm  # noqa: E402
from ask_oom.assistant.session import SessionStore  # noqa: E402
from ask_oom.assistant.settings import Settings  # noqa: E402

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"


def _grounding(messages: list[dict]) -> dict:
    user = next(m["content"] for m in messages if m["role"] == "user")
    m = re.search(r"Deterministic diagnosis \(JSON, sizes in GiB\):\n(\{.*?\})\n\nDeterministic answer", user, re.S)
    return json.loads(m.group(1))


def _completion(model: str, message: dict, finish: str) -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}


class ScriptedLLM(BaseHTTPRequestHandler):
    """POST /v1/chat/completions; the request's `model` picks the script."""

    requests: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ScriptedLLM.requests.append(body)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self.send_error(404)
            return
        model, messages = body["model"], body["messages"]
        if model == "broken":
            self.send_error(500, "model crashed")
            return
        if model == "notools" and body.get("tools"):
            data = json.dumps({"error": {"message": "this model does not support tools", "type": "invalid_request_error"}}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if model == "notools":  # ReAct: tools are described in the prompt, calls come back as text
            observed = [m for m in messages if m["role"] != "system" and "Observation:" in str(m.get("content"))]
            if not observed:
                content = 'Thought: I need the calculator.\nAction: estimate_memory\nAction Input: {"micro_batch": 1}'
            else:
                g = _grounding(messages)
                content = ("Thought: I can answer without using any more tools.\n"
                           f"Answer: {g['error']['requested_gib']} GiB was requested; primary cause {g['root_causes'][0]['label']}.")
            reply = _completion(model, {"role": "assistant", "content": content}, "stop")
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if model == "garbage":
            data = b"<html>not json</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        tool_results = [m for m in messages if m["role"] == "tool"]
        if model == "slow":
            time.sleep(3.0)
            reply = _completion(model, {"role": "assistant", "content": "too late"}, "stop")
        elif model == "grounded" and not tool_results:
            assert any(t["function"]["name"] == "estimate_memory" for t in body.get("tools", []))
            call = {"id": "call_1", "type": "function",
                    "function": {"name": "estimate_memory", "arguments": json.dumps({"micro_batch": 1})}}
            reply = _completion(model, {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")
        elif model == "grounded":
            g = _grounding(messages)
            try:
                out = json.loads(tool_results[-1]["content"])
            except ValueError:  # a tool error comes back as text
                out = {}
            text = (f"The log shows a {g['error']['requested_gib']} GiB request with {g['error']['free_gib']} GiB free. "
                    f"Primary cause: {g['root_causes'][0]['label']}.")
            if "peak_gib" in out:
                text += f" At micro-batch 1 the calculator estimates a peak of {out['peak_gib']} GiB."
            reply = _completion(model, {"role": "assistant", "content": text}, "stop")
        elif model == "wrong":
            reply = _completion(model, {"role": "assistant",
                                        "content": "The peak is 12.34 GiB, so lower the batch to 3 and it uses 7.77 GiB."}, "stop")
        else:
            reply = _completion(model, {"role": "assistant", "content": "ok"}, "stop")
        data = json.dumps(reply).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the slow script): that is the point of the test


@pytest.fixture(scope="module")
def llm_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedLLM)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def seed_diagnosis():
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest

    d = SEEDS / "kimi-vl-a3b"
    req = DiagnoseRequest(log_text=(d / "train.log").read_text(), config_text=(d / "train.yaml").read_text(),
                          config_name="train.yaml", extra_configs={"ds_z3_config.json": (d / "ds_z3_config.json").read_text()})
    return req, diagnose(req)


def _settings(url: str, model: str, timeout: float = 20.0) -> Settings:
    return Settings(llm_base_url=url, llm_model=model, llm_timeout_s=timeout)


def test_grounded_answer_with_tool_calls_is_accepted(llm_server, seed_diagnosis):
    req, d = seed_diagnosis
    ScriptedLLM.requests.clear()
    out = answer_with_llm(_settings(llm_server, "grounded"), "why did it OOM?", d, request=req)
    assert out.accepted, out.note
    assert out.tool_calls == ["estimate_memory"]
    assert "Primary cause: " + d.root_causes[0].label in out.text
    assert f"{d.report.requested_bytes / 2**30:.2f}".rstrip("0").rstrip(".") in out.text
    # the first request offered the four tools and carried the deterministic diagnosis as grounding
    first = ScriptedLLM.requests[0]
    assert {t["function"]["name"] for t in first["tools"]} == {"parse_log", "estimate_memory", "search_cases", "plan_fixes"}
    assert _grounding(first["messages"])["root_causes"][0]["label"] == d.root_causes[0].label
    # the second request carried the tool's result back
    assert any(m["role"] == "tool" for m in ScriptedLLM.requests[-1]["messages"])


def test_wrong_numbers_are_rejected(llm_server, seed_diagnosis):
    req, d = seed_diagnosis
    out = answer_with_llm(_settings(llm_server, "wrong"), "why?", d, request=req)
    assert not out.accepted
    assert "12.34 GiB" in out.unmatched and "7.77 GiB" in out.unmatched
    assert "do not match" in out.note


def test_slow_server_times_out_with_a_note(llm_server, seed_diagnosis):
    req, d = seed_diagnosis
    t0 = time.monotonic()
    out = answer_with_llm(_settings(llm_server, "slow", timeout=0.5), "why?", d, request=req)
    assert time.monotonic() - t0 < 2.5
    assert not out.accepted and "did not answer within 0.5 s" in out.note


def test_unreachable_endpoint_gives_a_note(seed_diagnosis):
    req, d = seed_diagnosis
    out = answer_with_llm(_settings(f"http://127.0.0.1:{_free_port()}/v1", "any", timeout=5), "why?", d, request=req)
    assert not out.accepted and "unavailable" in out.note


def test_endpoint_without_tool_calling_falls_back_to_react(llm_server, seed_diagnosis):
    req, d = seed_diagnosis
    out = answer_with_llm(_settings(llm_server, "notools"), "why?", d, request=req)
    assert out.accepted, out.note
    assert out.agent == "react" and out.tool_calls == ["estimate_memory"]
    assert f"primary cause {d.root_causes[0].label}" in out.text


@pytest.mark.parametrize("model", ["broken", "garbage"])
def test_server_errors_give_a_note(llm_server, seed_diagnosis, model):
    req, d = seed_diagnosis
    out = answer_with_llm(_settings(llm_server, model, timeout=5), "why?", d, request=req)
    assert not out.accepted and out.note.startswith("The LLM") and "deterministic answer" in out.note


def test_conversation_uses_the_llm_and_falls_back(llm_server, tmp_path):
    log_text = (SEEDS / "kimi-vl-a3b" / "train.log").read_text()
    good = Conversation(SessionStore(tmp_path / "a.db"), _settings(llm_server, "grounded"))
    reply = good.handle("s", log_text)
    assert reply.answered_by == "llm" and reply.markdown.startswith("The log shows")
    assert reply.diagnosis.summary.splitlines()[0][:40] in reply.markdown  # the full report stays below it
    reply = good.handle("s", "why did it run out of memory?")
    assert reply.answered_by == "llm" and "Primary cause:" in reply.markdown
    reply = good.handle("s", "show the diff again")              # exact outputs never go through the LLM
    assert reply.answered_by == "rules"

    bad = Conversation(SessionStore(tmp_path / "b.db"), _settings(llm_server, "wrong"))
    reply = bad.handle("s", log_text)
    assert reply.answered_by == "rules" and "12.34" not in reply.markdown
    assert "do not match the tools' outputs" in reply.markdown
    assert reply.diagnosis.summary.splitlines()[0][:40] in reply.markdown  # the deterministic answer stands

    slow = Conversation(SessionStore(tmp_path / "c.db"), _settings(llm_server, "slow", timeout=0.5))
    t0 = time.monotonic()
    reply = slow.handle("s", log_text)
    assert time.monotonic() - t0 < 10
    assert "did not answer within" in reply.markdown
