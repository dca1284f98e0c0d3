"""`ask-oom search` and `ask-oom kb ...` through the real CLI entry point: JSON shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ask_oom.kb.cases import CASES_DIR, load_case_file
from ask_oom.ui.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Packaged cases, an index and drafts under tmp, no LLM."""
    monkeypatch.setenv("ASK_OOM_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("ASK_OOM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("ASK_OOM_LLM_BASE_URL", raising=False)
    return tmp_path


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_search_json_fast(env, capsys):
    code, out, _ = _run(capsys, "search", "训练正常，一到评估阶段就显存不足", "--mode", "fast", "--k", "3", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["mode"] == "fast" and len(data["results"]) == 3
    top = data["results"][0]
    assert {"rank", "id", "score", "source", "title", "root_causes"} <= set(top)
    assert "eval_accumulation" in top["root_causes"] and top["source"]


def test_search_hybrid_with_filter(env, capsys):
    code, out, _ = _run(capsys, "search", "QLoRA 4-bit OOM while loading", "--framework", "hf_trainer", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["results"] and all(r["framework"] == "hf_trainer" for r in data["results"])
    assert all(r["dense_score"] is not None or r["bm25_score"] is not None for r in data["results"])


def test_search_markdown_and_errors(env, capsys):
    code, out, _ = _run(capsys, "search", "vLLM KV cache gpu_memory_utilization", "--mode", "bm25")
    assert code == 0 and "| # | score | case |" in out and "https://" in out
    code, _, err = _run(capsys, "search", "   ")
    assert code == 2 and err.count("\n") == 1 and "empty query" in err
    code, _, err = _run(capsys, "search", "oom", "--k", "0")
    assert code == 2 and "--k" in err
    code, _, err = _run(capsys, "search", "x" * 5000)
    assert code == 2 and "longer than" in err
    code, _, err = _run(capsys, "search", "oom", "--mode", "semantic")
    assert code == 2


def test_kb_list_and_show(env, capsys):
    code, out, _ = _run(capsys, "kb", "list", "--framework", "llamafactory", "--json")
    data = json.loads(out)
    assert code == 0 and data["count"] == len(data["cases"]) > 0
    assert all(c["framework"] == "llamafactory" for c in data["cases"])
    code, out, _ = _run(capsys, "kb", "show", "seed-kimi-vl-a3b-full-z3-cutoff16k", "--json")
    assert code == 0 and json.loads(out)["fixes"][0]["key"] == "cutoff_len"
    code, _, err = _run(capsys, "kb", "show", "no-such-case")
    assert code == 2 and "kb list" in err


def test_kb_ingest_refuses_duplicate_then_writes_with_out(env, capsys, shared_dir):
    doc = shared_dir / "seeds" / "000_9bf0b41c8e84ba26.txt"
    code, out, _ = _run(capsys, "kb", "ingest", str(doc), "--json")
    data = json.loads(out)["drafts"][0]
    assert code == 6 and data["duplicate_of"] == "seed-kimi-vl-a3b-full-z3-cutoff16k" and data["file"] is None
    code, out, _ = _run(capsys, "kb", "ingest", str(doc), "--force", "--out", str(env / "drafts"))
    assert code == 0 and "**draft**" in out and "cutoff_len" in out
    draft = next((env / "drafts").glob("*.yaml"))
    assert load_case_file(draft).root_causes[0] == "seq_len_too_long"


def test_kb_ingest_bad_inputs(env, capsys):
    code, _, err = _run(capsys, "kb", "ingest")
    assert code == 2 and "nothing to ingest" in err
    code, _, err = _run(capsys, "kb", "ingest", str(env / "missing.md"))
    assert code == 2 and "no such file" in err
    (env / "blob.bin").write_bytes(b"\x00\xff" * 64)
    code, _, err = _run(capsys, "kb", "ingest", str(env / "blob.bin"))
    assert code == 2 and "binary" in err
    code, _, err = _run(capsys, "kb", "ingest", "--llm", str(REPO / "README.md"))
    assert code == 2 and "ASK_OOM_LLM_BASE_URL" in err


def test_kb_build_and_invalid_case_folder(env, capsys, monkeypatch):
    cases = env / "cases"
    shutil.copytree(CASES_DIR, cases, ignore=shutil.ignore_patterns(".ask-oom"))
    monkeypatch.setenv("ASK_OOM_KB_DIR", str(cases))
    code, out, _ = _run(capsys, "kb", "build", "--lexical-only", "--json")
    info = json.loads(out)
    assert code == 0 and info["cases"] == len(list(cases.glob("*.yaml"))) and info["dense"] is False
    (cases / "broken-case.yaml").write_text("id: broken-case\ntitle: [unclosed\n")
    code, _, err = _run(capsys, "kb", "build", "--lexical-only")
    assert code == 2 and err.startswith("ask-oom: error: broken-case.yaml") and err.count("\n") == 1


def test_kb_ingest_session(env, capsys, monkeypatch):
    """A solved conversation (real agent) → `kb ingest --session` → a draft case that loads back."""
    from ask_oom.assistant.conversation import Conversation
    from ask_oom.assistant.session import SessionStore
    from ask_oom.assistant.settings import Settings

    kimi = REPO / "tests" / "fixtures" / "seeds" / "kimi-vl-a3b"
    db = env / "sessions.sqlite3"
    conv = Conversation(SessionStore(db), Settings(llm_base_url=None))
    conv.handle("t1", (kimi / "train.log").read_text(),
                files={"train.yaml": (kimi / "train.yaml").read_text(),
                       "ds_z3_config.json": (kimi / "ds_z3_config.json").read_text()})
    monkeypatch.setenv("ASK_OOM_SESSION_DB", str(db))
    empty = env / "empty-kb"
    empty.mkdir()
    monkeypatch.setenv("ASK_OOM_KB_DIR", str(empty))
    code, _, err = _run(capsys, "kb", "ingest", "--session", "t1")
    assert code == 2 and "not marked solved" in err
    conv.handle("t1", "it worked, thanks!")
    code, out, _ = _run(capsys, "kb", "ingest", "--session", "t1", "--out", str(env / "drafts"), "--json")
    assert code == 0
    draft = json.loads(out)["drafts"][0]
    case = load_case_file(draft["file"])
    assert case.model.name == "moonshotai/Kimi-VL-A3B-Instruct" and "t1" in case.source


def test_search_from_a_log(env, capsys):
    log = (REPO / "tests" / "fixtures" / "seeds" / "moe-llava-phi2" / "train.log").resolve()   # a link into ui/examples
    code, out, _ = _run(capsys, "search", "--log", str(log), "--mode", "fast", "--k", "3", "--json")
    data = json.loads(out)
    assert code == 0 and "cuda_oom" in data["query"] and "Traceback" not in data["query"]
    assert data["results"][0]["id"] == "seed-moe-llava-phi2-batch8-a100-40g"
    clean = REPO / "tests" / "fixtures" / "logs" / "clean_training_log_not_oom.log"
    if clean.is_file():
        code, out, err = _run(capsys, "search", "--log", str(clean))
        assert code == 3 and "nothing to search for" in err  # a clean log has no failure to search for


def test_unreachable_qdrant_is_exit_4(env, capsys, monkeypatch):
    pytest.importorskip("llama_index.vector_stores.qdrant")
    monkeypatch.setenv("ASK_OOM_QDRANT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    code, _, err = _run(capsys, "search", "eval oom", "--mode", "hybrid")
    assert code == 4 and "unreachable" in err and err.count("\n") == 1
    code, out, _ = _run(capsys, "search", "eval oom", "--mode", "fast", "--json")
    assert code == 0 and json.loads(out)["results"]  # the fast path never needs the vector store


def test_fast_search_cli_imports_no_torch(env):
    import subprocess
    import sys

    code = ("import sys; from ask_oom.ui.cli import main; "
            "rc = main(['search', 'eval oom', '--mode', 'fast', '--json']); "
            "print('HEAVY', [m for m in ('torch', 'llama_index.core', 'transformers') if m in sys.modules], rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert "HEAVY [] 0" in out.stdout
