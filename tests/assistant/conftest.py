"""Fixtures the conversation tests share: the case index (built once per module) and a fresh conversation on its own
SQLite store, without an LLM or a probe device."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def index():
    from ask_oom.kb.index import CaseIndex

    return CaseIndex.load_or_build()


@pytest.fixture
def conv(tmp_path, index):
    from ask_oom.assistant.conversation import Conversation
    from ask_oom.assistant.session import SessionStore
    from ask_oom.assistant.settings import Settings

    return Conversation(SessionStore(tmp_path / "sessions.db"), Settings(llm_base_url=None), index=index, probe_device=None)
