"""Shared set-up for the long-running interfaces (web UI, Slack bot): one conversation over the session store."""

from __future__ import annotations


def make_conversation(settings):
    """A Conversation backed by the configured SQLite session store, with the retrieval index loaded once."""
    from ..assistant.conversation import Conversation
    from ..assistant.session import SessionStore

    settings.session_db.parent.mkdir(parents=True, exist_ok=True)
    return Conversation(SessionStore.from_settings(settings), settings)
