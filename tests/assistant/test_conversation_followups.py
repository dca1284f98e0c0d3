"""Follow-ups as people type them (issue 18, Conversation): "one card" sets one GPU, host RAM is host RAM (never a
what-if), a Chinese conversation stays Chinese, a follow-up shows what changed (the full report on request), the
kb command names the real session, and text from the user or the log is escaped in Markdown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ask_oom.assistant.conversation import Conversation
from ask_oom.assistant.explain import explain
from ask_oom.assistant.intents import parse_followups
from ask_oom.assistant.markdown_text import md_escape
from ask_oom.assistant.render import render_markdown
from ask_oom.assistant.texts import EN
from ask_oom.tools.labels import RootCause

KIMI = Path(__file__).resolve().parents[1] / "fixtures" / "seeds" / "kimi-vl-a3b"


def _diagnosed(conv: Conversation, sid: str, first_words: str = "") -> None:
    """A session with the Kimi-VL log and config diagnosed (a fixed config and a diff); `first_words` set the language."""
    if first_words:
        conv.handle(sid, first_words)
    files = {"train.yaml": (KIMI / "train.yaml").read_text(), "ds_z3_config.json": (KIMI / "ds_z3_config.json").read_text()}
    conv.handle(sid, (KIMI / "train.log").read_text(), files=files)


def _english_sentences() -> list[str]:
    """The English fixed texts, cut at their placeholders into pieces long enough to be a sentence's words."""
    pieces = []
    for text in EN.values():
        for piece in re.split(r"\{[a-z_]+\}", text):
            piece = piece.strip(" .:;—()>*`\"'")
            if len(piece) >= 12 and re.search(r"[a-z]{3,} [a-z]{2,}", piece):
                pieces.append(piece)
    return pieces


# -- 1. "one card" is one GPU ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["我只有一张24G的卡", "I only have one 24GB card", "a single 24GB GPU", "只有1张24G显卡"])
def test_one_card_sets_one_gpu(text):
    hw = next(i for i in parse_followups(text) if i.name == "set_hardware")
    assert hw.slots == {"count": 1, "memory_gib": 24.0}


def test_one_card_after_eight_gpus_leaves_one_gpu(conv):
    conv.handle("s", "我有8张H20")
    assert conv.store.get("s").state.request.num_gpus == 8
    conv.handle("s", "我只有一张24G的卡")
    req = conv.store.get("s").state.request
    assert req.num_gpus == 1 and req.gpu_memory_gib == 24.0
    conv.handle("s", "I only have one 24GB card")
    assert conv.store.get("s").state.request.num_gpus == 1


# -- 2. host RAM is host RAM -----------------------------------------------------------------------


@pytest.mark.parametrize("text, gib", [("the machine has 744 GB RAM", 744.0), ("机器内存744G", 744.0),
                                       ("host memory is 1TB", 1024.0), ("we have 512GB of RAM per node", 512.0)])
def test_host_ram_statements_set_host_ram_only(text, gib):
    intents = parse_followups(text)
    assert [(i.name, i.slots) for i in intents] == [("set_host_ram", {"host_ram_gib": gib})]


def test_host_ram_wins_and_what_ifs_are_never_negative_or_words():
    intents = parse_followups("I use ZeRO-3 with offload of optimizer and params; the machine has 744 GB RAM")
    assert ("set_host_ram", {"host_ram_gib": 744.0}) in [(i.name, i.slots) for i in intents]
    for i in intents:
        if i.name == "what_if":
            assert not (isinstance(i.slots["value"], (int, float)) and i.slots["value"] < 0), i
            assert i.slots["value"] not in ("and", "or", "the"), i
            assert i.slots["field"] != "zero_stage" or i.slots["value"] in (0, 1, 2, 3), i
    assert not [i for i in parse_followups("what if zero_stage = -3") if i.name == "what_if"]
    assert not [i for i in parse_followups("use optimizer and scheduler") if i.name == "what_if"]
    assert [i.slots for i in parse_followups("try optim adamw_8bit")] == [{"key": "optim", "field": "optimizer", "value": "adamw_8bit"}]


def test_host_ram_message_sets_the_state_not_a_what_if(conv):
    conv.handle("s", "the machine has 744 GB RAM")
    state = conv.store.get("s").state
    assert state.request.host_ram_gib == 744.0 and state.overrides == {}


# -- 3. a Chinese conversation stays Chinese ---------------------------------------------------------


def test_chinese_follow_up_replies_have_no_english_fixed_text(conv):
    _diagnosed(conv, "zh", "训练爆显存了，帮我看看")
    english = _english_sentences()
    assert len(english) > 20
    for words in ["为什么？", "cutoff_len改成2048会怎样", "我只有一张24G的卡", "机器内存744G", "必须全量微调", "再给我看一下diff",
                  "还是OOM", "解决了", "撤销"]:
        reply = conv.handle("zh", words).markdown
        leaked = [e for e in english if e in reply]
        assert not leaked, (words, leaked)
        assert re.search(r"[\u4e00-\u9fff]", reply) or reply.startswith("```diff"), words


# -- 4. a follow-up shows what changed; the full report on request ------------------------------------


def test_follow_up_shows_what_changed_and_the_full_report_only_on_request(conv):
    _diagnosed(conv, "s")
    full = conv.handle("s", "show the full report").markdown
    hardware = conv.handle("s", "I only have one 80GB card").markdown        # a re-plan that is not a what-if
    assert "**New estimate**: peak" in hardware and "# ask-oom diagnosis" not in hardware
    assert "# ask-oom diagnosis" in full
    reply = conv.handle("s", "what if cutoff_len is 2048?")
    assert reply.show_diagnosis and reply.diagnosis.diff
    text = reply.markdown
    assert "# ask-oom diagnosis" not in text and "## Fixed config" not in text
    assert len(text) < len(full) / 2 and len(text) < 4000, len(text)
    assert "estimated peak" in text and "**After the changes**: peak" in text and "```diff" in text and "+cutoff_len: 2048" in text
    assert "show the full report" in text
    again = conv.handle("s", "show the full report").markdown
    assert "# ask-oom diagnosis" in again and "## Fixed config" in again


def test_chinese_full_report_on_request(conv):
    """A Chinese conversation's report is Chinese: the first answer's and the one asked for again."""
    from ask_oom.assistant.texts import ZH

    first = conv.handle("zh", "帮我看看").markdown
    files = {"train.yaml": (KIMI / "train.yaml").read_text(), "ds_z3_config.json": (KIMI / "ds_z3_config.json").read_text()}
    first = conv.handle("zh", (KIMI / "train.log").read_text(), files=files).markdown
    assert ZH["rp_title"] in first and ZH["rp_causes"] in first and EN["rp_causes"] not in first
    assert ZH["rp_title"] not in conv.handle("zh", "cutoff_len改成2048会怎样").markdown
    again = conv.handle("zh", "完整报告").markdown
    assert ZH["rp_title"] in again and ZH["rp_memory"] in again and EN["rp_memory"] not in again


# -- 5. the kb command names the session ---------------------------------------------------------------


def test_solved_names_the_real_session_id(conv):
    _diagnosed(conv, "team-42")
    text = conv.handle("team-42", "it worked").markdown
    assert "`ask-oom kb ingest --session team-42`" in text and "<id>" not in text


# -- 6. Markdown from the user or the log is escaped -------------------------------------------------


def test_markdown_in_log_text_is_escaped(conv):
    _diagnosed(conv, "s")
    d = conv.store.get("s").state.diagnosis
    cause = RootCause(label="eager_attention", score=0.9, why=["the log shows b*heads*s*s and [link](x) <b>"])
    d = d.model_copy(update={"root_causes": [cause], "summary": "step b*heads*s*s ran out"})
    for text in (render_markdown(d), explain(d, "")):
        assert "b*heads*s*s" not in text and r"b\*heads\*s\*s" in text
        assert "[link](x)" not in text and "<b>" not in text
    assert md_escape("per_device_train_batch_size") == "per_device_train_batch_size"   # snake_case stays readable


def test_every_english_text_has_a_chinese_one():
    from ask_oom.assistant.texts import ZH

    assert EN.keys() == ZH.keys()
    assert all(re.search(r"[\u4e00-\u9fff]", ZH[k]) or not re.search(r"[a-z]{3,} [a-z]{3,}", EN[k]) for k in EN)


@pytest.mark.parametrize("text, name", [("show the full report", "show_report"), ("完整报告", "show_report"),
                                        ("show me the report again", "show_report"), ("给我完整配置", "show_config"),
                                        ("show the diff again", "show_diff")])
def test_full_report_requests_are_understood(text, name):
    assert [i.name for i in parse_followups(text)] == [name]


def test_one_of_several_gpus_is_not_a_count():
    assert not any(i.name == "set_hardware" and i.slots.get("count") == 1
                   for i in parse_followups("one of my 8 GPUs runs out first"))


@pytest.mark.parametrize("words, optimizer, param", [("what if we offload the optimizer to cpu?", True, False),
                                                     ("要是参数也offload呢", True, True)])
def test_an_offload_what_if_reaches_the_deepspeed_config_and_the_estimate(conv, words, optimizer, param):
    """An offload what-if is written into the DeepSpeed JSON the diagnosis re-plans from (devices, and the ZeRO stage
    the offload needs), so the setup the calculator sizes has it."""
    _diagnosed(conv, "off")
    conv.handle("off", words)
    state = conv.store.get("off").state
    assert state.overrides.get("offload") == ("all" if param else "optimizer")
    setup = state.diagnosis.setup
    assert (setup.offload_optimizer, setup.offload_param) == (optimizer, param)
    assert setup.zero_stage >= (3 if param else 2)


def test_an_offload_what_if_without_a_deepspeed_config_is_sized_by_the_calculator():
    from ask_oom.assistant.what_if import offload_fields

    assert offload_fields("optimizer", 0) == {"offload_optimizer": True, "offload_param": False, "zero_stage": 2}
    assert offload_fields("all", 2) == {"offload_optimizer": True, "offload_param": True, "zero_stage": 3}
    assert offload_fields("none", 3) == {"offload_optimizer": False, "offload_param": False}
