"""LLM structured extraction against a local server that speaks the OpenAI chat-completions protocol (loopback only)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ask_oom.assistant.settings import Settings
from ask_oom.kb.cases import load_case_file
from ask_oom.kb.ingest import ingest_file

LLM_CASE = {
    "id": "ignored-by-merge",
    "title": "MoE-LLaVA Phi-2 fine-tuning OOM on 8x A100 40GB, fixed by halving the micro-batch",
    "source": "ignored",
    "model": {"name": "MoE-LLaVA-Phi2", "size": "2.7B", "modality": "vision-language-moe"},
    "hardware": {"gpu": "A100", "count": 4, "memory_gib": 80},  # conflicting numbers: the rules' facts must win
    "framework": "llava",
    "method": "full",
    "symptom": {"error_kind": "cuda_oom", "phase": "train", "operation": "forward"},
    "root_causes": ["batch_too_large", "vision_tokens", "made_up_label"],
    "fixes": [
        {"key": "per_device_train_batch_size", "from": 8, "to": 4, "confirmed": True,
         "rationale": "Half the micro-batch halves the activation peak."},
        {"action": "enable gradient checkpointing in the DeepSpeed launch script", "rationale": "Recompute activations."},
    ],
    "outcome": "The fine-tune stage ran after halving the micro-batch and doubling accumulation.",
}


class _OpenAIHandler(BaseHTTPRequestHandler):
    """POST /v1/chat/completions → a chat.completion whose message content is the scripted reply."""

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        mode = self.server.mode
        if mode == "slow":
            time.sleep(3)
        if mode == "error" or self.path != "/v1/chat/completions":
            self.send_response(500)
            self.end_headers()
            return
        content = "Sure! ```json\n" + json.dumps(LLM_CASE) + "\n```" if mode == "ok" else "I cannot help with that."
        reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": content}}],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        data = json.dumps(reply).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test): nothing to answer

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def llm_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIHandler)
    server.requests, server.mode = [], "ok"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _settings(server, timeout=5.0) -> Settings:
    return Settings(llm_base_url=f"http://127.0.0.1:{server.server_port}/v1", llm_model="local-test",
                    llm_api_key="test-key", llm_timeout_s=timeout)


@pytest.fixture
def seed_doc(shared_dir):
    return shared_dir / "seeds" / "001_1baa7663d0f6c7eb.txt"


def test_llm_fills_words_and_keeps_rule_facts(llm_server, seed_doc, tmp_path):
    empty = tmp_path / "cases"
    empty.mkdir()
    result = ingest_file(seed_doc, cases_dir=empty, out_dir=tmp_path / "drafts", settings=_settings(llm_server))
    assert result.llm_used and result.path is not None
    req = llm_server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer test-key"
    assert req["body"]["model"] == "local-test" and req["body"]["response_format"] == {"type": "json_object"}
    assert "MoE-LLaVA" in req["body"]["messages"][1]["content"]  # the cleaned article is sent

    case = load_case_file(result.path)
    assert case.title == LLM_CASE["title"]  # English title for a Chinese article
    assert case.outcome == LLM_CASE["outcome"]
    assert (case.hardware.count, case.hardware.memory_gib) == (8, 40.0)  # rules win over the LLM's numbers
    assert case.model.size == "2.7B" and case.symptom.operation == "forward"  # gaps filled
    assert case.root_causes[0] == "batch_too_large" and "made_up_label" not in case.root_causes
    batch = next(f for f in case.fixes if f.key == "per_device_train_batch_size")
    assert (batch.from_value, batch.to_value, batch.confirmed) == (8, 4, True)
    assert batch.rationale == "Half the micro-batch halves the activation peak."
    assert any(f.action and "gradient checkpointing" in f.action for f in case.fixes)


@pytest.mark.parametrize("mode", ["garbage", "error", "slow"])
def test_llm_failure_keeps_the_rule_draft(llm_server, seed_doc, tmp_path, mode):
    llm_server.mode = mode
    empty = tmp_path / "cases"
    empty.mkdir()
    t0 = time.perf_counter()
    result = ingest_file(seed_doc, cases_dir=empty, out_dir=tmp_path / "drafts",
                         settings=_settings(llm_server, timeout=1.0))
    assert time.perf_counter() - t0 < 2.9  # the timeout holds; never waits for the slow server
    assert not result.llm_used and result.path is not None
    assert any("LLM extraction skipped" in w for w in result.warnings)
    assert result.case.root_causes[0] == "batch_too_large"


def test_no_llm_configured_means_rules_only(seed_doc, tmp_path):
    empty = tmp_path / "cases"
    empty.mkdir()
    result = ingest_file(seed_doc, cases_dir=empty, out_dir=tmp_path / "drafts", settings=Settings(llm_base_url=None))
    assert not result.llm_used and result.path is not None
