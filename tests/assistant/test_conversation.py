"""Multi-turn conversations end to end over the real agent: log, then config, then follow-ups; state persists
across a restart; bad input is answered without losing the session; 20 sessions at once do not mix."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ask_oom.assistant.conversation import Conversation
from ask_oom.assistant.session import SessionStore
from ask_oom.assistant.session_to_case import draft_case_from_session
from ask_oom.assistant.settings import Settings
from ask_oom.kb.schema import Case
from ask_oom.tools.errors import InputError

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"
KIMI = SEEDS / "kimi-vl-a3b"


def _settings(**kw) -> Settings:
    return Settings(llm_base_url=None, **kw)


@pytest.fixture(scope="module")
def index():
    from ask_oom.kb.index import CaseIndex

    return CaseIndex.load_or_build()


@pytest.fixture
def conv(tmp_path, index):
    return Conversation(SessionStore(tmp_path / "sessions.db"), _settings(), index=index)


def _kimi_files() -> dict[str, str]:
    return {"train.yaml": (KIMI / "train.yaml").read_text(), "ds_z3_config.json": (KIMI / "ds_z3_config.json").read_text()}


def test_log_then_config_then_follow_ups(conv):
    r1 = conv.handle("s", (KIMI / "train.log").read_text())
    assert r1.intent == "log" and r1.show_diagnosis and r1.diagnosis.status != "no_memory_error"
    assert r1.diagnosis.report.kind == "cuda_oom"
    assert any(q.slot == "config" for q in r1.needs)          # it asks for what it lacks
    assert r1.markdown.strip()

    r2 = conv.handle("s", "here is my config", files=_kimi_files())
    assert r2.intent == "config" and r2.show_diagnosis
    d = r2.diagnosis
    assert d.setup.model_name == "moonshotai/Kimi-VL-A3B-Instruct"
    assert d.fixed_config and d.diff
    assert "why?" in r2.suggestions

    r3 = conv.handle("s", "why?")
    assert r3.intent == "explain" and not r3.show_diagnosis
    assert f"`{d.root_causes[0].label}`" in r3.markdown
    assert r3.diagnosis == d                                   # no re-plan for a question

    r4 = conv.handle("s", "show the diff again")
    assert f"```diff\n{d.diff}\n```" in r4.markdown

    r5 = conv.handle("s", "give me the full fixed config")
    assert d.fixed_config in r5.markdown


def test_hardware_and_constraints_re_plan(conv):
    conv.handle("s", (KIMI / "train.log").read_text(), files=_kimi_files())
    r = conv.handle("s", "I have 4x A100 40GB")
    assert r.intent == "set_hardware" and r.show_diagnosis
    setup = r.diagnosis.setup
    assert setup.gpu.name == "A100-40GB" and setup.num_gpus == 4
    assert setup.provenance["gpu"].origin == "user" and setup.provenance["num_gpus"].origin == "user"

    r = conv.handle("s", "I must keep full fine-tuning")
    assert "full" in conv.store.get("s").state.request.keep
    assert not any(f.key in ("finetuning_type", "quantization_bit") for f in r.diagnosis.fixes)
    assert r.diagnosis.setup.method == "full"


def test_what_if_edits_the_config_and_the_diff_is_against_the_original(conv):
    conv.handle("s", (KIMI / "train.log").read_text(), files=_kimi_files())
    r = conv.handle("s", "what if cutoff_len is 8192?")
    assert r.intent == "what_if" and r.show_diagnosis
    assert r.diagnosis.setup.seq_len == 8192
    assert conv.store.get("s").state.overrides == {"cutoff_len": 8192}
    assert "What-if (cutoff_len=8192)" in r.markdown
    # the diff the user sees starts from the file they gave, so it shows 16384 going away
    assert "-cutoff_len: 16384" in r.diagnosis.diff


def test_what_ifs_accumulate_until_undone(conv):
    conv.handle("s", (KIMI / "train.log").read_text(), files=_kimi_files())
    r = conv.handle("s", "what if zero stage 2?")                   # goes to the DeepSpeed JSON
    assert r.diagnosis.setup.zero_stage == 2
    r = conv.handle("s", "what if I turn off gradient checkpointing")  # LLaMA-Factory's inverted key
    assert r.diagnosis.setup.gradient_checkpointing is False and r.diagnosis.setup.zero_stage == 2
    r = conv.handle("s", "what if lora_dropout=0.1")
    assert "does not change the estimate" in r.markdown
    r = conv.handle("s", "undo")
    assert r.intent == "undo" and "dropped" in r.markdown
    state = conv.store.get("s").state
    assert state.overrides == {} and r.diagnosis.setup.zero_stage == 3 and r.diagnosis.setup.gradient_checkpointing


def test_switch_method_to_qlora(conv):
    conv.handle("s", (KIMI / "train.log").read_text(), files=_kimi_files())
    r = conv.handle("s", "use QLoRA instead")
    assert r.intent == "switch_method" and r.show_diagnosis
    assert r.diagnosis.setup.method == "qlora"
    assert "+finetuning_type: lora" in r.diagnosis.diff


def test_what_if_without_a_config_uses_the_calculator(conv):
    log = (SEEDS / "deepke-llama2-13b" / "train.log").read_text()
    r = conv.handle("s", log)
    if r.diagnosis.setup.model is None:
        pytest.skip("the log alone does not name a model the registry knows")
    r = conv.handle("s", "what if per_device_train_batch_size is 1?")
    assert r.what_if is not None and r.what_if["values"] == {"micro_batch": 1}
    est = r.what_if["estimate"]
    assert est["peak_bytes"] > 0
    assert "What-if (micro_batch=1)" in r.markdown


def test_session_survives_a_restart(tmp_path, index):
    db = tmp_path / "s.db"
    first = Conversation(SessionStore(db), _settings(), index=index)
    first.handle("thread-1", (KIMI / "train.log").read_text(), files=_kimi_files())
    first.handle("thread-1", "我有8张H20")
    again = Conversation(SessionStore(db), _settings(), index=index)
    r = again.handle("thread-1", "为什么")
    assert r.intent == "explain" and r.diagnosis is not None
    state = again.store.get("thread-1").state
    assert state.request.num_gpus == 8 and state.language == "zh"
    assert [t.intent for t in state.history if t.role == "user"] == [None, "set_hardware", "explain"]


def test_feedback_and_draft_case(conv):
    conv.handle("s", (KIMI / "train.log").read_text(), files=_kimi_files())
    with pytest.raises(InputError, match="not marked solved"):
        draft_case_from_session(conv.store, "s")
    before = conv.store.get("s").state.diagnosis
    r = conv.handle("s", "still OOM")
    assert r.intent == "mark_unsolved" and "not solved" in r.markdown
    # the plan fit on paper but not on the GPU: it is re-planned with 10% more headroom
    assert r.show_diagnosis and conv.store.get("s").state.margin == 0.8
    assert r.diagnosis.estimate_after.budget_bytes < before.estimate_after.budget_bytes
    assert r.diagnosis.estimate_after.peak_bytes <= r.diagnosis.estimate_after.budget_bytes
    r = conv.handle("s", "it worked, thanks!")
    assert r.intent == "mark_solved"
    case = draft_case_from_session(conv.store, "s")
    assert isinstance(case, Case) and Case.model_validate(case.model_dump(by_alias=True))
    d = r.diagnosis
    assert case.root_causes[0] == d.root_causes[0].label
    assert case.model.name == "moonshotai/Kimi-VL-A3B-Instruct"
    assert case.symptom.error_kind == "cuda_oom" and case.symptom.numbers["requested_gib"] == 16.0
    assert [f.key for f in case.fixes] == [f.key for f in d.fixes] and all(f.confirmed for f in case.fixes)
    assert case.settings.get("cutoff_len") == 16384 or "cutoff_len" not in [f.key for f in d.fixes]
    assert "s" in case.source and "solved" in case.tags
    assert all(c.score >= 0.5 for c in d.root_causes[1:] if c.label in case.root_causes[1:])
    # what `ask-oom kb ingest --session` writes reads back as a valid case
    from ask_oom.kb.cases import parse_case_text
    from ask_oom.kb.ingest import case_to_yaml

    assert parse_case_text(case_to_yaml(case)) == case


def test_still_oom_with_a_new_log_replaces_the_log(conv):
    conv.handle("s", (KIMI / "train.log").read_text(), files=_kimi_files())
    new_log = (SEEDS / "qwen2.5-vl-7b" / "train.log").read_text()
    r = conv.handle("s", f"still OOM after the change, new log:\n```\n{new_log}\n```")
    assert {i.name for i in r.intents} == {"mark_unsolved"} and r.show_diagnosis
    state = conv.store.get("s").state
    assert state.request.log_text.strip() == new_log.strip()       # a new OOM replaces the old log
    assert state.margin is None                                      # the new numbers, not a blind margin cut
    assert state.feedback[-1].solved is False


def test_draft_case_needs_a_diagnosed_session(conv):
    with pytest.raises(InputError, match="no session"):
        draft_case_from_session(conv.store, "nope")
    conv.handle("empty", "I have 2x 4090")
    with pytest.raises(InputError, match="no diagnosis"):
        draft_case_from_session(conv.store, "empty")


def test_chat_before_any_log_is_remembered(conv):
    r = conv.handle("s", "I have 2x 4090 and no deepspeed")
    assert r.diagnosis is None and not r.show_diagnosis
    assert "paste the error log" in r.markdown.lower()
    state = conv.store.get("s").state
    assert state.request.gpu == "RTX-4090-24GB" and state.request.num_gpus == 2 and state.request.keep == ["no-deepspeed"]
    r = conv.handle("s", (KIMI / "train.log").read_text())
    assert r.diagnosis.setup.gpu.name == "RTX-4090-24GB"


def test_unknown_help_reset_and_chinese(conv):
    r = conv.handle("s", "hello there")
    assert r.intent == "unknown" and "what if cutoff_len is 8192?" in r.markdown
    r = conv.handle("zh", "你能做什么")
    assert r.intent == "help" and "粘贴报错日志" in r.markdown
    conv.handle("s", (KIMI / "train.log").read_text())
    r = conv.handle("s", "start over")
    assert r.intent == "reset" and r.diagnosis is None
    assert conv.store.get("s").state.request.log_text == ""


def test_bad_config_is_answered_and_the_session_kept(conv):
    conv.handle("s", (KIMI / "train.log").read_text())
    r = conv.handle("s", "", files={"train.yaml": "model_name_or_path: !!python/object/apply:os.system ['echo hi']\ncutoff_len: 1024\n"})
    assert r.intent == "error" and r.error and "\n" not in r.error
    state = conv.store.get("s").state
    assert state.request.log_text and not state.configs       # the log stays, the bad config is not kept
    r = conv.handle("s", "why?")
    assert r.intent == "explain" and r.diagnosis is not None


def test_oversized_input_is_refused(tmp_path, index):
    conv = Conversation(SessionStore(tmp_path / "s.db"), _settings(max_upload_bytes=1000), index=index)
    r = conv.handle("s", "x" * 5000)
    assert r.intent == "error" and "too large" in r.markdown
    assert conv.store.get("s") is None


def test_twenty_concurrent_sessions_do_not_mix(tmp_path, index):
    conv = Conversation(SessionStore(tmp_path / "s.db"), _settings(), index=index)
    seeds = sorted(p for p in SEEDS.iterdir() if p.is_dir())
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []

    def user(n: int) -> None:
        seed = seeds[n % len(seeds)]
        try:
            r1 = conv.handle(f"u{n}", (seed / "train.log").read_text())
            r2 = conv.handle(f"u{n}", f"I have {n + 1}x H100")
            results[n] = (seed.name, r1.diagnosis.report.requested_bytes, r2.diagnosis.setup.num_gpus)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:1]
    for n, (seed, requested, gpus) in results.items():
        own = conv.store.get(f"u{n}").state
        assert gpus == n + 1 and own.request.num_gpus == n + 1
        assert own.diagnosis.report.requested_bytes == requested
        assert own.request.log_text == (SEEDS / seed / "train.log").read_text().strip()
    assert len(results) == 20


def test_bad_ids_and_binary_files_are_answered_not_raised(conv):
    r = conv.handle("", "why?")
    assert r.intent == "error" and "session id" in r.error
    r = conv.handle("s", "", files={"core.dump": b"\x7fELF\x00\x00\x01"})
    assert r.intent == "error" and "binary" in r.error and conv.store.get("s") is None
    r = conv.handle("s", "", files={"train.log": (KIMI / "train.log").read_bytes()})
    assert r.intent == "log" and r.diagnosis.report.kind == "cuda_oom"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=400))
def test_any_message_gets_an_answer(conv, text):
    r = conv.handle("fuzz", text)
    assert r.markdown and r.intent


def test_a_failing_stage_is_answered_and_the_session_kept(tmp_path, index):
    calls = {"n": 0}

    def flaky(request, **kw):
        from ask_oom.assistant.agent import diagnose

        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("planner exploded")
        return diagnose(request, **kw)

    conv = Conversation(SessionStore(tmp_path / "s.db"), _settings(), index=index, diagnose=flaky)
    first = conv.handle("s", (KIMI / "train.log").read_text())
    r = conv.handle("s", "I have 2x H100")
    assert r.intent == "error" and "planner exploded" in r.error
    state = conv.store.get("s").state
    assert state.request.gpu is None and state.diagnosis == first.diagnosis   # the failed turn changed nothing
    r = conv.handle("s", "I have 2x H100")
    assert r.diagnosis.setup.num_gpus == 2


@pytest.mark.parametrize("lang_msg", ["I have 4x H100", "我有4张H100"])
def test_every_suggestion_is_understood(conv, lang_msg):
    from ask_oom.assistant.intents import parse_followup

    conv.handle("s", lang_msg)
    r = conv.handle("s", (KIMI / "train.log").read_text(), files=_kimi_files())
    assert len(r.suggestions) >= 4
    for suggestion in r.suggestions:
        assert parse_followup(suggestion).name != "unknown", suggestion
        follow = conv.handle("s", suggestion)
        assert follow.intent != "unknown" and follow.intent != "error", (suggestion, follow.markdown[:200])


def test_explain_puts_the_asked_topic_first(conv):
    seed = SEEDS / "qwen2.5-vl-7b"
    conv.handle("s", (seed / "train.log").read_text(), files={p.name: p.read_text() for p in seed.iterdir()
                                                               if p.suffix in (".yaml", ".json") and p.name != "expected.json"})
    r = conv.handle("s", "why are the logits so big?")
    where = r.markdown.split("**Where the memory goes**", 1)[1]
    first_component = where.split("\n- ", 1)[1].split(":", 1)[0]
    assert first_component == "logits_and_loss"


def test_show_config_without_a_plan_shows_the_what_if_config(conv):
    cfg = (KIMI / "train.yaml").read_text()
    conv.handle("s", "", files={"train.yaml": cfg, "ds_z3_config.json": (KIMI / "ds_z3_config.json").read_text()})
    r = conv.handle("s", "what if cutoff_len is 2048?")
    assert r.diagnosis.fixed_config is None                      # no OOM log: nothing to fix, only the what-if
    r = conv.handle("s", "show the diff again")
    assert "-cutoff_len: 16384\n+cutoff_len: 2048" in r.markdown
    r = conv.handle("s", "show me the full config")
    assert "cutoff_len: 2048" in r.markdown and "No config changes are planned" in r.markdown
