"""The answer to one conversation turn, as every UI receives it, and the typed actions a UI's buttons send."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from .diagnosis import Diagnosis, Question
from .intent_types import Intent


class Action(StrEnum):
    """What a button means, typed: the conversation performs it without parsing text, in the session's language."""

    SOLVED = "solved"
    STILL_OOM = "still_oom"
    WHY = "why"
    SHOW_DIFF = "show_diff"
    PROBE = "probe"


class Reply(BaseModel):
    """One answer: Markdown for the user, the latest Diagnosis for rich UIs, and what to ask next."""

    session_id: str
    markdown: str
    diagnosis: Diagnosis | None = None
    intent: str = Field(description="what this turn was: log / config / a follow-up intent name / error")
    intents: list[Intent] = Field(default_factory=list)
    suggestions: list[str] = Field(default_factory=list, description="follow-up prompts the UI can offer as buttons")
    suggestion_actions: dict[str, Action] = Field(
        default_factory=dict, description="the suggestions that are typed actions, by text: the UI sends the action, not the text")
    needs: list[Question] = Field(default_factory=list, description="what the assistant still needs from the user")
    show_diagnosis: bool = Field(default=False, description="True when this turn produced a new diagnosis")
    what_if: dict[str, Any] | None = Field(default=None, description="calculator result of a what-if not applied to a config")
    notes: list[str] = Field(default_factory=list)
    error: str | None = None
    answered_by: Literal["rules", "llm"] = Field(default="rules", description="llm: the LLM's answer passed the number check")
