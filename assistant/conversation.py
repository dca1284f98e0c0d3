"""Multi-turn conversation over the deterministic agent: each turn updates the session state (log,
config, hardware, constraints, what-if overrides, method) and re-plans by calling `agent.diagnose`.

The UIs (CLI, Gradio, Slack) only collect input and render a `Reply`; all understanding happens here and in the
modules a turn uses: state_updates (what a turn changes), what_if, explain, live_probe, compose and reply_texts.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Callable

from ..tools.errors import InputError
from .compose import compose_markdown
from .diagnosis import DiagnoseRequest, Diagnosis
from .intent_types import IntentName
from .intents import Intent, parse_followups
from .live_probe import run_live_probe
from .message_parts import PASTE_TURNS, MessagePart, split_message, text_files
from .markdown_text import md_escape_outside_code
from .reply import Action, Reply
from .reply_texts import action_text, localized, needs, suggestion_actions, suggestions, unknown_action
from .session import Session, SessionState, SessionStore, StaleSessionError, check_session_id
from .state_updates import absorb_part, apply_intent
from .what_if import agent_request, calculator_what_if

log = logging.getLogger(__name__)

_REPLANNING = {"set_hardware", "set_host_ram", "keep_constraint", "release_constraint", "what_if", "switch_method", "mark_unsolved", "undo"}
_ACTION_INTENTS: dict[Action, IntentName] = {  # each button does exactly what the intent of its words does
    Action.SOLVED: "mark_solved", Action.STILL_OOM: "mark_unsolved", Action.WHY: "explain",
    Action.SHOW_DIFF: "show_diff", Action.PROBE: "run_probe",
}


class Conversation:
    """Answers turns of many sessions at once (thread-safe: one lock per session, shared store).

    `diagnose` defaults to `assistant.agent.diagnose`; `index` is the retrieval index passed to it
    (loaded once, lazily, when not given).
    """

    def __init__(self, store: SessionStore, settings=None, *, diagnose: Callable[..., Diagnosis] | None = None,
                 index: Any = None, probe_device: str | None = "auto"):
        if settings is None:
            from .settings import load_settings

            settings = load_settings()
        self.store = store
        self.settings = settings
        self._diagnose_fn = diagnose
        self._index = index
        self._index_lock = threading.Lock()
        self._index_loaded = index is not None
        self._probe_device = probe_device  # "auto": cuda:0 when this host has a GPU; None: never probe

    # -- public -----------------------------------------------------------------------------

    def handle(self, session_id: str, message: str, files: dict[str, str] | None = None,
               snapshots: list | None = None) -> Reply:
        """Apply one user turn to the session and answer it. Bad input is answered, never raised. `snapshots` are
        memory snapshots the door read (tools.snapshot.SnapshotSummary): they join the session's, one per rank."""
        try:
            check_session_id(session_id)
            files = text_files(files)
        except InputError as exc:
            return Reply(session_id=str(session_id)[:200], intent="error", error=str(exc), markdown=f"**Cannot use that input:** {exc}")
        size = len(message or "") + sum(len(t) for t in (files or {}).values())
        if size > self.settings.max_upload_bytes:
            return Reply(session_id=session_id, intent="error",
                         error=f"input too large: {size / 2**20:.1f} MiB (limit {self.settings.max_upload_bytes / 2**20:.0f} MiB)",
                         markdown=f"**Input too large** ({size / 2**20:.1f} MiB, limit {self.settings.max_upload_bytes / 2**20:.0f} MiB): "
                                  "paste the traceback and the ~200 lines before it, and attach the config.")
        return self._locked_turn(session_id, lambda session: self._turn(session, message or "", files, snapshots))

    def act(self, session_id: str, action: Action | str) -> Reply:
        """Perform a button's action (an `Action` or its value) as its intent would, without the intent parser and
        without touching the session's language. An unknown action is answered, never raised."""
        try:
            check_session_id(session_id)
        except InputError as exc:
            return Reply(session_id=str(session_id)[:200], intent="error", error=str(exc),
                         markdown=f"**Cannot use that input:** {exc}")
        try:
            action = Action(action)
        except ValueError:
            return self._unknown_action(session_id, str(action))
        return self._locked_turn(session_id, lambda session: self._action_turn(session, action))

    def resume(self, session_id: str) -> tuple[list[tuple[str, str]], Reply] | None:
        """A stored conversation to show again (a reloaded page, a restarted server): its turns as (role, text) and
        a Reply carrying its latest diagnosis and follow-ups; None when the id is invalid, unknown or expired."""
        try:
            session = self.store.get(session_id)
        except InputError:
            return None
        if session is None:
            return None
        state = session.state
        turns = [(t.role, t.text) for t in state.history]
        reply = Reply(session_id=session_id, markdown=turns[-1][1] if turns else "", diagnosis=state.diagnosis,
                      intent="resume", suggestions=suggestions(state), suggestion_actions=suggestion_actions(state),
                      needs=needs(state))
        return turns, reply

    # -- one turn ---------------------------------------------------------------------------

    def _locked_turn(self, session_id: str, turn: Callable[[Session], Reply]) -> Reply:
        """Run `turn` on the session under its lock and save it; replayed when another process saved in between."""
        for _attempt in range(3):
            with self.store.lock(session_id):
                session = self.store.get_or_create(session_id)
                try:
                    reply = turn(session)
                except Exception as exc:  # noqa: BLE001 - a bug must not take the UI down; the session stays as it was
                    log.exception("turn failed for session %s", session_id)
                    return Reply(session_id=session_id, intent="error", error=f"{type(exc).__name__}: {exc}",
                                 markdown=f"**Internal error** ({type(exc).__name__}): {exc}", diagnosis=session.state.diagnosis)
                try:
                    self.store.save(session)
                    return reply
                except StaleSessionError:
                    log.info("session %s changed in another process; replaying the turn", session_id)
        return Reply(session_id=session_id, intent="error", error="session busy",
                     markdown="**This conversation is being updated elsewhere right now** — send the message again.")

    def _unknown_action(self, session_id: str, name: str) -> Reply:
        """A clear answer to an action this version does not know, in the session's language; the session is untouched."""
        session = self.store.get(session_id)
        state = session.state if session is not None else SessionState()
        return Reply(session_id=session_id, intent="error", error=f"unknown action: {name[:80]}",
                     markdown=unknown_action(state, name), diagnosis=state.diagnosis,
                     suggestions=suggestions(state), suggestion_actions=suggestion_actions(state))

    def _turn(self, session: Session, message: str, files: dict[str, str] | None, snapshots: list | None = None) -> Reply:
        """A typed turn: split the message, parse its chat into intents, follow the user's language, answer."""
        before = session.state.model_copy(deep=True)
        parts = split_message(message, files)
        chat = "\n".join(p.text for p in parts if p.kind == "chat").strip()
        intents = parse_followups(chat) if chat else []
        _note_language(session.state, message, chat)
        said = message or " ".join([*(files or {}).keys(), *(s.name for s in snapshots or [])])
        return self._answer(session, before, parts, intents, said, chat or message, snapshots)

    def _action_turn(self, session: Session, action: Action) -> Reply:
        """A button turn: the action's intent, no parser, the session's language kept; history records the words
        the click stands for, in that language."""
        before = session.state.model_copy(deep=True)
        said = action_text(session.state, action)
        intent = Intent(name=_ACTION_INTENTS[action], evidence=f"action:{action.value}")
        return self._answer(session, before, [], [intent], said, said)

    def _answer(self, session: Session, before: SessionState, parts: list[MessagePart], intents: list[Intent],
                said: str, question: str, snapshots: list | None = None) -> Reply:
        """Apply the turn's parts and intents to the state and answer it; `said` is the user's turn as the history
        keeps it, `question` what an LLM answer replies to."""
        state = session.state
        state.add_turn("user", said, intents[0].name if intents else None)
        sid = session.id

        if any(i.name == "reset" for i in intents):
            session.state = SessionState(language=state.language)
            session.state.add_turn("user", said, "reset")
            return self._reply(session.state, sid, localized(state, "reset"), "reset", intents)

        try:
            changed, notes, new_diagnosis = self._update(state, parts, intents, snapshots)
        except InputError as exc:
            session.state = before
            session.state.add_turn("user", said, "error")
            return self._reply(session.state, sid, localized(session.state, "cannot_use", error=md_escape_outside_code(str(exc))),
                               "error", intents, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in a stage must not lose the conversation
            log.exception("diagnosis failed for session %s", sid)
            session.state = before
            return self._reply(session.state, sid, f"**Internal error while diagnosing** ({type(exc).__name__}): {exc}",
                               "error", intents, error=f"{type(exc).__name__}: {exc}")

        if any(i.name == "run_probe" for i in intents):
            try:
                probe_md = self._probe(state)
            except InputError as exc:
                probe_md = f"Live probe not started: {exc}"
            state.add_turn("assistant", probe_md, "run_probe")
            return self._reply(state, sid, probe_md, "run_probe", intents, show=False)

        kind = "snapshot" if snapshots and not any(p.kind in PASTE_TURNS for p in parts) else _turn_kind(parts, intents)
        what_if = None
        if new_diagnosis or kind in ("what_if", "switch_method"):
            what_if = calculator_what_if(state, self.settings.gpu_margin)
        markdown = compose_markdown(state, kind, intents, changed, notes, new_diagnosis, what_if, before.diagnosis is not None,
                                    session_id=sid)
        answered_by = "rules"
        if self.settings.llm_base_url and state.diagnosis is not None and kind in ("log", "config", "explain", "what_if",
                                                                                     "switch_method", "unknown"):
            markdown, llm_notes, answered_by = self._llm_answer(state, question, markdown, what_if, new_diagnosis)
            notes.extend(llm_notes)
        state.add_turn("assistant", markdown, kind)
        return self._reply(state, sid, markdown, kind, intents, show=new_diagnosis, what_if=what_if, notes=notes,
                           answered_by=answered_by)

    def _update(self, state: SessionState, parts: list[MessagePart], intents: list[Intent],
                snapshots: list | None = None) -> tuple[list[str], list[str], bool]:
        """Absorb the turn's logs / configs, snapshots and intents into the state and re-plan when they change the
        plan. Returns what changed (in words), the re-plan's notes, and whether there is a new diagnosis."""
        changed: list[str] = []
        replan = False
        if snapshots:
            new_ranks = {s.rank for s in snapshots}
            kept = [s for s in state.request.snapshots if s.rank not in new_ranks]
            state.request = state.request.model_copy(update={"snapshots": kept + list(snapshots)})
            changed.append("memory snapshot(s): " + ", ".join(s.name for s in snapshots))
            replan = True
        for part in parts:
            if part.kind != "chat":
                changed.append(absorb_part(state, part))
                replan = True
        new_log = any(p.kind == "log" for p in parts)
        for intent in intents:
            note = apply_intent(state, intent, default_margin=self.settings.gpu_margin, new_log=new_log)
            if note:
                changed.append(note)
            replan = replan or intent.name in _REPLANNING
        if replan and (state.request.log_text.strip() or state.configs):
            state.diagnosis, notes = self._replan(state)
            return changed, notes, True
        return changed, [], False

    # -- planning ---------------------------------------------------------------------------

    def _replan(self, state: SessionState) -> tuple[Diagnosis, list[str]]:
        request, notes = agent_request(state)
        diagnosis = self._diagnose(request, state.margin)
        original = state.original_configs.get(state.main_config or "")
        if original and request.config_text != original and diagnosis.fixed_config:
            from ..tools.configs import unified_diff

            # the user's diff is against what they gave us, what-ifs included
            diagnosis = diagnosis.model_copy(update={"diff": unified_diff(original, diagnosis.fixed_config, state.main_config)})
        return diagnosis, notes

    def _diagnose(self, request: DiagnoseRequest, margin: float | None = None) -> Diagnosis:
        settings = self.settings if margin is None else self.settings.model_copy(update={"gpu_margin": margin})
        if self._diagnose_fn is not None:
            return self._diagnose_fn(request, index=self._get_index(), settings=settings)
        from .agent import diagnose

        return diagnose(request, index=self._get_index(), settings=settings)

    def _get_index(self):
        if self._index_loaded:
            return self._index
        with self._index_lock:
            if not self._index_loaded:
                try:
                    from ..kb.index import CaseIndex

                    self._index = CaseIndex.load_or_build(self.settings)
                except Exception:  # noqa: BLE001 - diagnosis works without similar cases; say so in the log
                    log.warning("knowledge-base index unavailable; diagnosing without similar cases", exc_info=True)
                    self._index = None
                self._index_loaded = True
        return self._index

    # -- live probe -------------------------------------------------------------------------

    def probe_device(self) -> str | None:
        if self._probe_device != "auto":
            return self._probe_device
        from ..tools.cuda_available import cuda_available

        return "cuda:0" if cuda_available() else None

    def _probe(self, state: SessionState) -> str:
        """Run real training steps of the (fixed) config on this host's GPU and put the measurement beside the estimate."""
        if state.diagnosis is None:
            return localized(state, "nothing_yet")
        return run_live_probe(state, self.probe_device(), self.settings.gpu_margin)

    # -- answers ----------------------------------------------------------------------------

    def _llm_answer(self, state: SessionState, question: str, markdown: str, what_if: dict | None,
                    new_diagnosis: bool) -> tuple[str, list[str], str]:
        from .llm import answer_with_llm

        try:
            request = agent_request(state)[0]
        except Exception:  # noqa: BLE001 - the tools then work from the diagnosis alone
            request = state.request
        outcome = answer_with_llm(self.settings, question, state.diagnosis, deterministic_markdown=markdown,
                                  extra_facts={"what_if": what_if} if what_if else None, request=request,
                                  index=self._index, history=[(t.role, t.text) for t in state.history[:-1]])
        if outcome.accepted and outcome.text:
            # a new diagnosis keeps its full report (fixed config, diff) under the LLM's explanation
            text = outcome.text + ("\n\n---\n\n" + markdown if new_diagnosis else "")
            return text, [], "llm"
        note = [outcome.note] if outcome.note else []
        return markdown + (f"\n\n> {outcome.note}" if outcome.note else ""), note, "rules"

    def _reply(self, state: SessionState, sid: str, markdown: str, kind: str, intents: list[Intent], *, show: bool = False,
               what_if: dict | None = None, notes: list[str] | None = None, error: str | None = None,
               answered_by: str = "rules") -> Reply:
        return Reply(session_id=sid, markdown=markdown, diagnosis=state.diagnosis, intent=kind, intents=intents,
                     suggestions=suggestions(state), suggestion_actions=suggestion_actions(state), needs=needs(state),
                     show_diagnosis=show, what_if=what_if,
                     notes=notes or [], error=error, answered_by=answered_by)


def _note_language(state: SessionState, message: str, chat: str) -> None:
    """Answer in Chinese once the user writes Chinese; back to English when they write English chat."""
    if _has_cjk(message):
        state.language = "zh"
    elif chat and re.search(r"[A-Za-z]{3,}", chat) and not _has_cjk(chat):
        state.language = "en"


def _has_cjk(text: str) -> bool:
    return bool(re.search(r"[\u4e00-\u9fff]", text or ""))


def _turn_kind(parts: list[MessagePart], intents: list[Intent]) -> str:
    kinds = [p.kind for p in parts if p.kind != "chat"]
    if "log" in kinds:
        return "log"
    if "config" in kinds or "model_config" in kinds:
        return "config"
    return intents[0].name if intents else "unknown"


__all__ = ["Action", "Conversation", "Reply"]
