"""Typed actions (the UIs' buttons): each does what the words of its intent do, skips the intent parser, and keeps
the conversation's language; an unknown action is answered without touching the session."""

from __future__ import annotations

from pathlib import Path


from ask_oom.assistant.conversation import Action, Conversation

KIMI = Path(__file__).resolve().parents[1] / "fixtures" / "seeds" / "kimi-vl-a3b"

# each action and the English words a user types for it today, in an order that exercises every path:
# questions first (no re-plan), then "still OOM" (re-plans with more headroom), then "it worked"
EQUIVALENT_WORDS = [(Action.WHY, "why?"), (Action.SHOW_DIFF, "show the diff again"), (Action.PROBE, "run the live probe"),
                    (Action.STILL_OOM, "still OOM"), (Action.SOLVED, "it worked")]


def _start(conv: Conversation, sid: str, words: str = "") -> None:
    """A diagnosed session with a fixed config and a diff (the Kimi-VL seed); `words` set the language."""
    files = {"train.yaml": (KIMI / "train.yaml").read_text(), "ds_z3_config.json": (KIMI / "ds_z3_config.json").read_text()}
    if words:
        conv.handle(sid, words)
    r = conv.handle(sid, (KIMI / "train.log").read_text(), files=files)
    assert r.diagnosis is not None and r.diagnosis.diff and r.diagnosis.fixes


def test_each_action_does_what_its_english_words_do(conv):
    _start(conv, "typed")
    _start(conv, "clicked")
    for action, words in EQUIVALENT_WORDS:
        typed = conv.handle("typed", words)
        clicked = conv.act("clicked", action)
        assert clicked.intent == typed.intent and [i.name for i in clicked.intents] == [i.name for i in typed.intents], action
        assert clicked.markdown.replace("--session clicked", "--session typed") == typed.markdown, action  # each names its own session
        assert clicked.diagnosis == typed.diagnosis and clicked.show_diagnosis == typed.show_diagnosis, action
        assert clicked.suggestions == typed.suggestions, action
    typed_state, clicked_state = conv.store.get("typed").state, conv.store.get("clicked").state
    assert clicked_state.margin == typed_state.margin == 0.8                    # still OOM re-planned with more headroom
    assert [f.solved for f in clicked_state.feedback] == [f.solved for f in typed_state.feedback] == [False, True]
    assert [(t.text, t.intent) for t in clicked_state.history if t.role == "user"][-5:] == [
        (w, t.intent) for (_, w), t in zip(EQUIVALENT_WORDS, [t for t in typed_state.history if t.role == "user"][-5:])]
    assert clicked_state.language == typed_state.language == "en"


def test_actions_keep_a_chinese_conversation_chinese(conv):
    _start(conv, "zh", "我有8张H20")
    assert conv.store.get("zh").state.language == "zh"
    r = conv.act("zh", Action.SOLVED)
    assert r.intent == "mark_solved" and "已标记为**已解决**" in r.markdown and "Glad it works" not in r.markdown
    r = conv.act("zh", Action.STILL_OOM)
    assert r.intent == "mark_unsolved" and "已标记为**未解决**" in r.markdown and r.show_diagnosis
    r = conv.act("zh", Action.WHY)
    assert r.intent == "explain" and "为什么？" in r.suggestions and r.suggestion_actions["为什么？"] is Action.WHY
    state = conv.store.get("zh").state
    assert state.language == "zh" and state.solved is False
    assert [t.text for t in state.history if t.role == "user"][-3:] == ["解决了", "还是OOM", "为什么？"]


def test_chinese_actions_answer_as_the_chinese_words_do(conv):
    _start(conv, "typed", "我有8张H20")
    _start(conv, "clicked", "我有8张H20")
    for action, words in [(Action.WHY, "为什么？"), (Action.SHOW_DIFF, "再给我看一下diff"), (Action.SOLVED, "解决了")]:
        typed, clicked = conv.handle("typed", words), conv.act("clicked", action)
        assert clicked.markdown.replace("--session clicked", "--session typed") == typed.markdown and clicked.intent == typed.intent, action


def test_suggestion_chips_carry_their_actions(conv):
    _start(conv, "s")
    r = conv.act("s", Action.WHY)
    assert r.suggestion_actions == {"why?": Action.WHY, "show the diff again": Action.SHOW_DIFF,
                                    "it worked": Action.SOLVED, "still OOM": Action.STILL_OOM}
    assert set(r.suggestion_actions) <= set(r.suggestions)


def test_action_values_are_accepted_and_unknown_actions_answered(conv):
    _start(conv, "s")
    before = conv.store.get("s")
    r = conv.act("s", "bogus_button")
    assert r.intent == "error" and "bogus_button" in r.error and "`bogus_button`" in r.markdown
    assert r.diagnosis == before.state.diagnosis
    after = conv.store.get("s")
    assert after.version == before.version and after.state == before.state       # nothing changed, nothing saved
    r = conv.act("s", "show_diff")                                                # an Action's value works like the Action
    assert r.intent == "show_diff" and "```diff" in r.markdown


def test_unknown_action_in_a_chinese_conversation_is_answered_in_chinese(conv):
    conv.handle("zh", "我有8张H20")
    r = conv.act("zh", "slack:ask_oom_bogus")
    assert r.intent == "error" and "我不认识这个按钮" in r.markdown and "解决了" in r.markdown
    assert conv.act("nobody", "bogus").intent == "error" and conv.store.get("nobody") is None


def test_actions_before_a_diagnosis_and_bad_session_ids(conv):
    r = conv.act("new", Action.WHY)
    assert r.intent == "explain" and "paste the error log" in r.markdown.lower()
    r = conv.act("new", Action.PROBE)
    assert r.intent == "run_probe" and "paste the error log" in r.markdown.lower()
    r = conv.act("", Action.SOLVED)
    assert r.intent == "error" and "session id" in r.error
