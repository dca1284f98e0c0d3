"""The follow-up intents a chat message can carry, each with its slots."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

IntentName = Literal[
    "set_hardware", "set_host_ram", "keep_constraint", "release_constraint", "what_if", "switch_method", "explain",
    "show_diff", "show_config", "show_report", "mark_solved", "mark_unsolved", "run_probe", "undo", "reset", "help", "unknown",
]


class Intent(BaseModel):
    """One thing the user asked for, with its slots (e.g. gpu/count/memory_gib, key/field/value)."""

    name: IntentName
    slots: dict[str, Any] = Field(default_factory=dict)
    evidence: str = Field(default="", description="the words that triggered it")
