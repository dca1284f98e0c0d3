"""Multi-turn conversation over the deterministic agent: each turn updates the session state (log,
config, hardware, constraints, what-if overrides, method) and re-plans by calling `agent.diagnose`.

The UIs (CLI, Gradio, Slack) only collect input and render a `Reply`; all understanding happens here.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field, ValidationError

from ..tools.configs.schema import ConfigChange
from ..tools.errors import InputError
from ..tools.labels import ROOT_CAUSES
from ..tools.units import format_bytes
from .diagnosis import DiagnoseRequest, Diagnosis, Question
from .intents import UNDERSTOOD, Intent, parse_followups, setup_field
from .message_parts import (
    MessagePart, config_name_for, is_deepspeed_config, referenced_deepspeed, split_message,
)
from .session import Feedback, Session, SessionState, SessionStore, StaleSessionError, _check_id as _check_session_id

log = logging.getLogger(__name__)

MAX_LOG_CHARS = 4 * 1024 * 1024   # the stored log keeps its last 4 MiB (the error is at the end)
MAX_CONFIG_CHARS = 2 * 1024 * 1024  # same limit as the CLI's config reader
MAX_CONFIGS = 8
_REPLANNING = {"set_hardware", "keep_constraint", "release_constraint", "what_if", "switch_method", "mark_unsolved", "undo"}
MARGIN_STEP = 0.10   # each "still OOM" leaves 10% more of the GPU unplanned (the estimate was optimistic)
MIN_MARGIN = 0.60
_VALID_KEEP = ("full", "seq", "batch", "no-deepspeed")
PROBE_TRIAL_TIMEOUT_S = 300.0   # one probe step set; the whole probe is bounded too (never a hang)
PROBE_TOTAL_TIMEOUT_S = 600.0


class Reply(BaseModel):
    """One answer: Markdown for the user, the latest Diagnosis for rich UIs, and what to ask next."""

    session_id: str
    markdown: str
    diagnosis: Diagnosis | None = None
    intent: str = Field(description="what this turn was: log / config / a follow-up intent name / error")
    intents: list[Intent] = Field(default_factory=list)
    suggestions: list[str] = Field(default_factory=list, description="follow-up prompts the UI can offer as buttons")
    needs: list[Question] = Field(default_factory=list, description="what the assistant still needs from the user")
    show_diagnosis: bool = Field(default=False, description="True when this turn produced a new diagnosis")
    what_if: dict[str, Any] | None = Field(default=None, description="calculator result of a what-if not applied to a config")
    notes: list[str] = Field(default_factory=list)
    error: str | None = None
    answered_by: Literal["rules", "llm"] = Field(default="rules", description="llm: the LLM's answer passed the number check")


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

    def handle(self, session_id: str, message: str, files: dict[str, str] | None = None) -> Reply:
        """Apply one user turn to the session and answer it. Bad input is answered, never raised."""
        try:
            _check_session_id(session_id)
            files = _text_files(files)
        except InputError as exc:
            return Reply(session_id=str(session_id)[:200], intent="error", error=str(exc), markdown=f"**Cannot use that input:** {exc}")
        size = len(message or "") + sum(len(t) for t in (files or {}).values())
        if size > self.settings.max_upload_bytes:
            return Reply(session_id=session_id, intent="error",
                         error=f"input too large: {size / 2**20:.1f} MiB (limit {self.settings.max_upload_bytes / 2**20:.0f} MiB)",
                         markdown=f"**Input too large** ({size / 2**20:.1f} MiB, limit {self.settings.max_upload_bytes / 2**20:.0f} MiB): "
                                  "paste the traceback and the ~200 lines before it, and attach the config.")
        for _attempt in range(3):
            with self.store.lock(session_id):
                session = self.store.get_or_create(session_id)
                try:
                    reply = self._turn(session, message or "", files)
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

    # -- one turn ---------------------------------------------------------------------------

    def _turn(self, session: Session, message: str, files: dict[str, str] | None) -> Reply:
        before = session.state.model_copy(deep=True)
        state = session.state
        parts = split_message(message, files)
        chat = "\n".join(p.text for p in parts if p.kind == "chat").strip()
        intents = parse_followups(chat) if chat else []
        if _has_cjk(message):
            state.language = "zh"
        elif chat and re.search(r"[A-Za-z]{3,}", chat) and not _has_cjk(chat):
            state.language = "en"
        state.add_turn("user", message or " ".join((files or {}).keys()), intents[0].name if intents else None)
        sid = session.id

        if any(i.name == "reset" for i in intents):
            session.state = SessionState(language=state.language)
            session.state.add_turn("user", message, "reset")
            return self._reply(session.state, sid, _t(state, "reset"), "reset", intents)

        changed: list[str] = []
        notes: list[str] = []
        new_diagnosis = False
        try:
            replan = False
            for part in parts:
                if part.kind != "chat":
                    changed.append(self._absorb(state, part))
                    replan = True
            new_log = any(p.kind == "log" for p in parts)
            for intent in intents:
                note = self._apply_intent(state, intent, new_log=new_log)
                if note:
                    changed.append(note)
                replan = replan or intent.name in _REPLANNING
            if replan and (state.request.log_text.strip() or state.configs):
                state.diagnosis, notes = self._replan(state)
                new_diagnosis = True
        except InputError as exc:
            session.state = before
            session.state.add_turn("user", message, "error")
            return self._reply(session.state, sid, f"**Cannot use that input:** {exc}", "error", intents, error=str(exc))
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

        kind = _turn_kind(parts, intents)
        what_if = None
        if new_diagnosis or kind in ("what_if", "switch_method"):
            what_if = self._calculator_what_if(state)
        markdown = self._compose(state, kind, intents, changed, notes, new_diagnosis, what_if, before.diagnosis is not None)
        answered_by = "rules"
        if self.settings.llm_base_url and state.diagnosis is not None and kind in ("log", "config", "explain", "what_if",
                                                                                     "switch_method", "unknown"):
            markdown, llm_notes, answered_by = self._llm_answer(state, chat or message, markdown, what_if, new_diagnosis)
            notes.extend(llm_notes)
        state.add_turn("assistant", markdown, kind)
        return self._reply(state, sid, markdown, kind, intents, show=new_diagnosis, what_if=what_if, notes=notes,
                           answered_by=answered_by)

    # -- state updates ----------------------------------------------------------------------

    def _absorb(self, state: SessionState, part: MessagePart) -> str:
        """Put a log / config / model config.json into the state; returns what changed, in words."""
        req = state.request
        if part.kind == "model_config":
            req.model_config_json = part.text[:MAX_CONFIG_CHARS]
            return "model config.json"
        if part.kind == "log":
            text = part.text
            if req.log_text and not (_has_memory_error(text) and _has_memory_error(req.log_text)):
                # a continuation (split paste, an nvidia-smi table) joins the log; a new OOM replaces it
                text = req.log_text + "\n" + text
            req.log_truncated = part.truncated or len(text) > MAX_LOG_CHARS
            req.log_text = text[-MAX_LOG_CHARS:]
            return "log"
        text = part.text
        if len(text) > MAX_CONFIG_CHARS or part.truncated:
            raise InputError(f"config too large: {len(text) / 2**20:.1f} MiB (limit {MAX_CONFIG_CHARS / 2**20:.0f} MiB); "
                             "attach the training config itself, not a data file")
        name = part.name or config_name_for(text)
        if is_deepspeed_config(name, text) and part.name is None:
            main = state.configs.get(state.main_config or "")
            ref = referenced_deepspeed(main) if main else None
            name = ref or name
        state.configs[name] = text
        state.original_configs[name] = text
        while len(state.configs) > MAX_CONFIGS:
            oldest = next(iter(state.configs))
            state.configs.pop(oldest)
            state.original_configs.pop(oldest, None)
        if not is_deepspeed_config(name, text) or state.main_config is None:
            state.main_config = name
            state.overrides.clear()
            state.margin = None  # a new config starts a new plan; what-ifs were about the old one
        return f"config `{name}`"

    def _apply_intent(self, state: SessionState, intent: Intent, *, new_log: bool = False) -> str | None:
        req = state.request
        s = intent.slots
        if intent.name == "set_hardware":
            said = []
            if s.get("gpu") or s.get("gpu_text"):
                req.gpu = s.get("gpu") or s.get("gpu_text")
                req.gpu_memory_gib = s.get("memory_gib")
                said.append(req.gpu + (f" ({s['memory_gib']:g} GiB)" if s.get("memory_gib") else ""))
            elif s.get("memory_gib"):
                req.gpu_memory_gib = s["memory_gib"]
                said.append(f"{s['memory_gib']:g} GiB per GPU")
            if s.get("count"):
                req.num_gpus = int(s["count"])
                said.insert(0, f"{req.num_gpus} ×")
            return "hardware: " + " ".join(said)
        if intent.name == "keep_constraint":
            for k in s.get("keep", []):
                if k in _VALID_KEEP and k not in req.keep:
                    req.keep.append(k)
                if k == "full" and state.method not in (None, "full"):
                    state.method = None
            return "constraints: keep " + ", ".join(req.keep)
        if intent.name == "release_constraint":
            req.keep = [k for k in req.keep if k not in s.get("release", [])]
            return "constraints released: " + ", ".join(s.get("release", []))
        if intent.name == "what_if":
            state.overrides[s["key"]] = s["value"]
            return f"what-if: {s['key']} = {s['value']}"
        if intent.name == "undo":
            dropped = [f"{k}={v}" for k, v in state.overrides.items()] + ([f"method={state.method}"] if state.method else [])
            state.overrides.clear()
            state.method = None
            state.margin = None
            return "back to your own config" + (f" (dropped {', '.join(dropped)})" if dropped else "")
        if intent.name == "switch_method":
            state.method = s["method"]
            if s["method"] != "full" and "full" in req.keep:
                req.keep.remove("full")
            return f"method: {s['method']}"
        if intent.name in ("mark_solved", "mark_unsolved"):
            state.feedback.append(Feedback(solved=intent.name == "mark_solved", note=s.get("note", "")))
            if intent.name == "mark_unsolved" and not new_log and state.diagnosis is not None and state.diagnosis.fixes:
                # the plan fit on paper but not on the GPU: re-plan with more headroom (a new log instead
                # brings the real numbers of the new failure, which the agent reads)
                current = state.margin or self.settings.gpu_margin
                state.margin = round(max(MIN_MARGIN, current - MARGIN_STEP), 2)
                if state.margin < current:
                    return f"planning margin {current:.0%} → {state.margin:.0%} of GPU memory"
            return None
        return None

    # -- planning ---------------------------------------------------------------------------

    def _request(self, state: SessionState) -> tuple[DiagnoseRequest, list[str]]:
        """The agent's input from the state: the main config with what-ifs and the method applied.
        Sets `state.unapplied`: the what-ifs the config could not carry (the calculator answers those)."""
        req = state.request.model_copy(deep=True)
        notes: list[str] = []
        main = state.main_config if state.main_config in state.configs else None
        extras = {n: t for n, t in state.configs.items() if n != main}
        text = state.configs.get(main) if main else None
        state.unapplied = list(state.overrides) + (["method"] if state.method else [])
        if text is not None and (state.overrides or state.method):
            text, extras, notes, state.unapplied = self._apply_overrides(state, main, text, extras)
        req.config_text = text
        req.config_name = main
        req.extra_configs = extras
        return req, notes

    def _apply_overrides(self, state: SessionState, name: str, text: str, extras: dict[str, str]):
        """Edit the user's config with the what-if values and method (so the agent re-plans from them)."""
        from ..tools.configs import apply_changes, load_config

        doc = load_config(text, name, extra_files=extras or None)
        changes: list[ConfigChange] = []
        notes: list[str] = []
        unapplied: list[str] = []
        for key, value in state.overrides.items():
            change = _override_change(doc, key, value)
            if change is None:
                if setup_field(key) is None:
                    notes.append(f"`{key}` is not in your config and the calculator does not model it: it does not change the estimate")
                else:
                    notes.append(f"`{key}` is not a setting your config can carry; the what-if is estimated with the calculator only")
                unapplied.append(key)
                continue
            changes.append(change)
        if state.method:
            method_changes = _method_changes(doc.format, doc.settings, state.method)
            if method_changes is None:
                notes.append(f"your config format ({doc.format}) has no method key; {state.method} is estimated with the calculator only")
                unapplied.append("method")
            else:
                changes.extend(method_changes)
        if not changes:
            return text, extras, notes, unapplied
        new_text, new_ds = apply_changes(doc, changes)
        if new_ds is not None:
            ds_name = next((n for n, t in extras.items() if is_deepspeed_config(n, t)), None)
            if ds_name:
                extras = {**extras, ds_name: new_ds}
        return new_text, extras, notes, unapplied

    def _replan(self, state: SessionState) -> tuple[Diagnosis, list[str]]:
        request, notes = self._request(state)
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

    def _calculator_what_if(self, state: SessionState) -> dict[str, Any] | None:
        """What-ifs the config could not carry (no config, unknown key, no method key) go straight to the
        calculator on the diagnosed setup: peak and fit with the new values."""
        d = state.diagnosis
        if d is None or d.setup.model is None or not (state.overrides or state.method):
            return None
        setup = d.setup
        values: dict[str, Any] = {}
        for key, value in state.overrides.items():
            field = setup_field(key)
            if key not in state.unapplied or field is None or field not in type(setup).model_fields:
                continue
            values[field] = _setup_value(field, value)
        if state.method and "method" in state.unapplied and setup.method != state.method:
            values["method"] = state.method
            values["quantization_bit"] = 4 if state.method == "qlora" else None
        if not values:
            return None
        try:
            new = type(setup).model_validate({**setup.model_dump(), **values})
        except ValidationError as exc:
            return {"error": f"cannot evaluate {values}: {exc.errors()[0]['msg']}"}
        prov = dict(setup.provenance)
        from ..tools.training_setup import Provenance

        for f in values:
            prov[f] = Provenance(origin="user", detail="what-if in the conversation")
        new = new.model_copy(update={"provenance": prov})
        from ..tools.memory import estimate_memory

        try:
            est = estimate_memory(new, margin=self.settings.gpu_margin)
        except InputError as exc:
            return {"error": str(exc)}
        return {"values": values, "estimate": est.model_dump(), "before_peak_bytes": d.estimate.peak_bytes if d.estimate else None}

    # -- live probe -------------------------------------------------------------------------

    def probe_device(self) -> str | None:
        if self._probe_device != "auto":
            return self._probe_device
        from ..tools.cuda_available import cuda_available

        return "cuda:0" if cuda_available() else None

    def _probe(self, state: SessionState) -> str:
        """Run real training steps of the (fixed) config on this host's GPU and put the measurement beside the estimate."""
        d = state.diagnosis
        if d is None:
            return _t(state, "nothing_yet")
        device = self.probe_device()
        if device is None:
            return ("No CUDA device on this server, so no live probe here. On the GPU host you train on, run "
                    "`ask-oom probe --config <fixed config> --model-config config.json` to measure the peak.")
        if device.startswith("cuda"):
            from ..tools.probe.gpu_check import busy_reason
            from ..tools.units import GiB

            reason = busy_reason(int(device.split(":")[1]) if ":" in device else 0, threshold_bytes=GiB)
            if reason:
                return f"Live probe not started: {reason}"
        setup, what = self._probe_setup(state, d)
        hf_config = _hf_config(state, setup)
        if hf_config is None:
            return ("The live probe needs the model's config.json (the registry has no entry for "
                    f"{setup.model_name or 'this model'}): paste or attach it.")
        from ..tools.probe.runner import run_probe
        from ..tools.probe.schema import ProbeSpec, Trial

        image_px = int(setup.image_max_pixels ** 0.5) if setup.image_max_pixels and setup.model and setup.model.vision else None
        spec = ProbeSpec(hf_config=hf_config, device=device, method=setup.method, precision=setup.precision,
                         lora_rank=setup.lora_rank, lora_targets=setup.lora_targets, optimizer=setup.optimizer,
                         gradient_checkpointing=setup.gradient_checkpointing, attn_implementation=setup.attn_implementation,
                         freeze_vision_tower=setup.freeze_vision_tower, freeze_projector=setup.freeze_projector,
                         image_px=image_px, steps=2)
        estimate_peak = None
        try:
            from ..tools.memory import estimate_memory

            estimate_peak = estimate_memory(setup, margin=self.settings.gpu_margin).peak_bytes if setup.model else None
        except InputError:
            pass
        result = run_probe(spec, Trial(micro_batch=setup.micro_batch, seq_len=setup.seq_len), margin=self.settings.gpu_margin,
                           trial_timeout_s=PROBE_TRIAL_TIMEOUT_S, total_timeout_s=PROBE_TOTAL_TIMEOUT_S,
                           estimate_peak_bytes=estimate_peak)
        state.diagnosis = d.model_copy(update={"probe": result.model_dump(mode="json")})
        return _probe_markdown(result, what)

    def _probe_setup(self, state: SessionState, d: Diagnosis):
        """The setup the user would run next: the fixed config when there is one, else the diagnosed setup."""
        if not d.fixed_config:
            return d.setup, "the current setup"
        try:
            from ..tools.configs import load_config
            from ..tools.setup_assembly import assemble_setup

            req, _ = self._request(state)
            extras = dict(req.extra_configs)
            if d.fixed_deepspeed:
                name = referenced_deepspeed(d.fixed_config) or next((n for n, t in extras.items() if is_deepspeed_config(n, t)), None)
                if name:
                    extras[name] = d.fixed_deepspeed
            doc = load_config(d.fixed_config, req.config_name or "config", extras or None)
            return assemble_setup(d.report, doc, req), "the fixed config"
        except Exception:  # noqa: BLE001 - fall back to the diagnosed setup, said in the answer
            log.info("could not assemble the fixed setup for the probe", exc_info=True)
            return d.setup, "the current setup (the fixed config could not be read back)"

    # -- answers ----------------------------------------------------------------------------

    def _compose(self, state: SessionState, kind: str, intents: list[Intent], changed: list[str], notes: list[str],
                 new_diagnosis: bool, what_if: dict | None, had_diagnosis: bool) -> str:
        d = state.diagnosis
        out: list[str] = []
        if changed and (had_diagnosis or not new_diagnosis):
            out.append(_t(state, "updated") + "; ".join(changed) + ".")
        names = {i.name for i in intents}
        if "mark_solved" in names:
            out.append(_t(state, "solved"))
        if "mark_unsolved" in names:
            out.append(_t(state, "unsolved_replanned" if new_diagnosis else "unsolved"))
        if what_if:
            out.append(_what_if_markdown(what_if))
        elif kind in ("what_if", "switch_method") and new_diagnosis and d is not None and d.estimate is not None:
            out.append(_what_if_from_config(state, d))
        for n in notes:
            out.append(f"> note: {n}")
        if new_diagnosis and d is not None:
            out.append(_render(d))
        elif "explain" in names:
            out.append(_explain(d, next(i for i in intents if i.name == "explain").slots.get("topic", "")) if d else _t(state, "nothing_yet"))
        if "show_diff" in names or "show_config" in names:
            out.extend(self._show_config(state, diff="show_diff" in names, full="show_config" in names))
        if kind == "help":
            out.append(_help(state))
        elif kind == "unknown":
            out.append(_t(state, "unknown") + "\n\n" + _help(state))
        elif not new_diagnosis and not (state.request.log_text or state.configs) and kind not in ("mark_solved", "mark_unsolved"):
            out.append(_t(state, "need_log"))
        return "\n\n".join(x for x in out if x)

    def _show_config(self, state: SessionState, *, diff: bool, full: bool) -> list[str]:
        """The diff and/or the config to use: the fixed one; else, with what-ifs and no changes planned,
        the user's config with the what-ifs applied (against the file they gave)."""
        d = state.diagnosis
        if d is None or not state.main_config:
            return [_t(state, "no_diff")]
        out: list[str] = []
        text, fmt = d.fixed_config, d.fixed_config_format
        if not text:
            request, _ = self._request(state)
            text = request.config_text
            fmt = _format_of(state.main_config)
            out.append(_t(state, "no_changes"))
        original = state.original_configs.get(state.main_config, "")
        if diff:
            from ..tools.configs import unified_diff

            patch = d.diff if d.fixed_config else unified_diff(original, text or "", state.main_config)
            out.append(f"```diff\n{patch}\n```" if patch.strip() else _t(state, "same_config"))
        if full and text:
            out.append(f"```{_lang(fmt)}\n{text}\n```")
            if d.fixed_deepspeed:
                out.append(f"```json\n{d.fixed_deepspeed}\n```")
        return out

    def _llm_answer(self, state: SessionState, question: str, markdown: str, what_if: dict | None,
                    new_diagnosis: bool) -> tuple[str, list[str], str]:
        from .llm import answer_with_llm

        try:
            request = self._request(state)[0]
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
                     suggestions=_suggestions(state), needs=_needs(state), show_diagnosis=show, what_if=what_if,
                     notes=notes or [], error=error, answered_by=answered_by)


# -- helpers -------------------------------------------------------------------------------------

_FIELD_KEYS = {
    "seq_len": ("cutoff_len", "max_seq_length", "model_max_length", "max_length", "sequence_len", "max_seq_len", "seq_length"),
    "micro_batch": ("per_device_train_batch_size", "micro_batch_size", "train_micro_batch_size_per_gpu", "batch_size"),
    "eval_batch": ("per_device_eval_batch_size", "eval_batch_size"),
    "grad_accum": ("gradient_accumulation_steps", "gradient_accumulation"),
    "gradient_checkpointing": ("gradient_checkpointing", "activation_checkpointing"),
    "lora_rank": ("lora_rank", "lora_r", "r"),
    "quantization_bit": ("quantization_bit", "load_in_4bit", "bits"),
    "image_max_pixels": ("image_max_pixels", "max_pixels"),
    "video_frames": ("video_maxlen", "max_frames"),
    "optimizer": ("optim", "optimizer"),
    "attn_implementation": ("flash_attn", "attn_implementation"),
}


def _config_key(settings: dict[str, Any], key: str) -> str | None:
    """The key the user's config uses for what the user called `key` (cutoff_len ↔ max_seq_length)."""
    if key in settings:
        return key
    field = setup_field(key)
    for candidate in _FIELD_KEYS.get(field or "", ()):
        if candidate in settings:
            return candidate
    return None


# Keys a format takes for a setup field when the user's file does not have them yet (LLaMA-Factory and HF names).
_FORMAT_KEYS: dict[str, dict[str, str]] = {
    "llamafactory_yaml": {"seq_len": "cutoff_len", "micro_batch": "per_device_train_batch_size",
                          "eval_batch": "per_device_eval_batch_size", "grad_accum": "gradient_accumulation_steps",
                          "lora_rank": "lora_rank", "quantization_bit": "quantization_bit", "image_max_pixels": "image_max_pixels",
                          "video_frames": "video_maxlen", "optimizer": "optim", "attn_implementation": "flash_attn"},
    "hf_json": {"micro_batch": "per_device_train_batch_size", "eval_batch": "per_device_eval_batch_size",
                "grad_accum": "gradient_accumulation_steps", "gradient_checkpointing": "gradient_checkpointing", "optimizer": "optim"},
    "shell": {"micro_batch": "per_device_train_batch_size", "eval_batch": "per_device_eval_batch_size",
              "grad_accum": "gradient_accumulation_steps", "gradient_checkpointing": "gradient_checkpointing"},
}


def _override_change(doc, key: str, value: Any) -> ConfigChange | None:
    """The config edit for one what-if: the key the file uses, else the format's own key for that setting
    (LLaMA-Factory turns checkpointing off with `disable_gradient_checkpointing`); ZeRO stage goes to the DeepSpeed JSON."""
    why = "what-if asked in the conversation"
    real = _config_key(doc.settings, key)
    field = setup_field(key)
    if real is None and field == "gradient_checkpointing" and doc.format == "llamafactory_yaml" and isinstance(value, bool):
        return ConfigChange(key="disable_gradient_checkpointing", from_value=doc.settings.get("disable_gradient_checkpointing"),
                            to_value=not value, rationale=why)
    if real is None and field == "zero_stage":
        if doc.deepspeed is None or not isinstance(value, int) or not 0 <= value <= 3:
            return None
        stage = (doc.deepspeed.get("zero_optimization") or {}).get("stage")
        return ConfigChange(key="zero_optimization.stage", from_value=stage, to_value=value, rationale=why, target="deepspeed")
    if real is None and field is not None:
        real = _FORMAT_KEYS.get(doc.format, {}).get(field)
    if real is None:
        return None
    return ConfigChange(key=real, from_value=doc.settings.get(real), to_value=value, rationale=why)


def _method_changes(fmt: str, settings: dict[str, Any], method: str) -> list[ConfigChange] | None:
    """Config edits that switch the fine-tuning method, in the framework's own keys (LLaMA-Factory here)."""
    if "finetuning_type" not in settings and fmt != "llamafactory_yaml":
        return None
    why = f"switch to {method} as asked in the conversation"
    ft = "lora" if method in ("lora", "qlora") else method
    changes = [ConfigChange(key="finetuning_type", from_value=settings.get("finetuning_type"), to_value=ft,
                            rationale=why, tier=6, changes_results=True)]
    if method == "qlora" and settings.get("quantization_bit") != 4:
        changes.append(ConfigChange(key="quantization_bit", from_value=settings.get("quantization_bit"), to_value=4,
                                    rationale=why, tier=6, changes_results=True))
    elif method != "qlora" and settings.get("quantization_bit") is not None:
        changes.append(ConfigChange(key="quantization_bit", from_value=settings.get("quantization_bit"), to_value=None,
                                    rationale=why, tier=6, changes_results=True))
    return changes


def _setup_value(field: str, value: Any) -> Any:
    if field == "attn_implementation" and isinstance(value, (bool, str)):
        v = str(value).lower()
        return "flash_attention_2" if v in ("fa2", "true", "flash_attention_2", "flash", "auto") else "eager" if v in ("false", "disabled", "eager") else "sdpa"
    if field == "quantization_bit" and value is True:
        return 4
    return value


def _text_files(files: dict[str, Any] | None) -> dict[str, str] | None:
    """Attached files as text: bytes are decoded (UTF-8, replacement); binary data is refused with a one-line error."""
    if not files:
        return None
    out: dict[str, str] = {}
    for name, data in files.items():
        if isinstance(data, bytes):
            if b"\x00" in data[:8192]:
                raise InputError(f"{name} looks binary, not a text log or config: attach the .log / .yaml / .json / .sh file")
            data = data.decode("utf-8", errors="replace")
        if not isinstance(data, str):
            raise InputError(f"{name}: expected file text, got {type(data).__name__}")
        if "\x00" in data[:8192]:
            raise InputError(f"{name} looks binary, not a text log or config: attach the .log / .yaml / .json / .sh file")
        out[str(name)[:255]] = data
    return out


def _has_memory_error(text: str) -> bool:
    from ..tools.log_parser import parse_log

    return parse_log(text).is_memory_error


def _has_cjk(text: str) -> bool:
    return bool(re.search(r"[\u4e00-\u9fff]", text or ""))


def _turn_kind(parts: list[MessagePart], intents: list[Intent]) -> str:
    kinds = [p.kind for p in parts if p.kind != "chat"]
    if "log" in kinds:
        return "log"
    if "config" in kinds or "model_config" in kinds:
        return "config"
    return intents[0].name if intents else "unknown"


def _format_of(name: str) -> str:
    low = name.lower()
    return "json" if low.endswith(".json") else "shell" if low.endswith(".sh") else "yaml"


def _lang(fmt: str | None) -> str:
    if not fmt:
        return ""
    return "json" if "json" in fmt else "bash" if fmt == "shell" else "yaml"


def _render(d: Diagnosis) -> str:
    from .render import render_markdown

    return render_markdown(d)


def _explain(d: Diagnosis, topic: str) -> str:
    """Why the diagnosis says what it says: the causes with their evidence, where the memory goes, why each fix."""
    if not d.root_causes:
        return d.summary or "No memory error was found in the log, so there is nothing to explain yet."
    topic_words = {w for w in re.findall(r"[a-z_]{4,}", topic.lower()) if w not in _STOPWORDS} if topic else set()
    causes = sorted(d.root_causes, key=lambda c: (-_overlap(topic_words, c.label + " " + " ".join(c.why)), -c.score))
    lines = []
    top = causes[0]
    lines.append(f"**Why: `{top.label}`** — {ROOT_CAUSES.get(top.label, '')}")
    lines.extend(f"- {w}" for w in top.why)
    if len(causes) > 1:
        lines.append("\nAlso contributing: " + ", ".join(f"`{c.label}` ({c.score:.2f})" for c in causes[1:4]))
    est = d.estimate
    if est is not None:
        comps = sorted(est.breakdown.components, key=lambda c: (-_overlap(topic_words, c.name.replace("_", " ")), -c.bytes))
        head = f"\n**Where the memory goes** (estimated peak {format_bytes(est.peak_bytes)} at {est.peak_phase}"
        if est.budget_bytes:
            head += f"; usable budget {format_bytes(est.budget_bytes)} on {est.gpu_name or 'the GPU'}"
        lines.append(head + "):")
        for c in comps[:6]:
            lines.append(f"- {c.name}: {format_bytes(c.bytes)}" + (f" — {c.formula}" if c.formula else ""))
    if d.fixes:
        lines.append("\n**Why these changes**:")
        for f in sorted(d.fixes, key=lambda f: -_overlap(topic_words, f"{f.key} {f.action} {f.rationale}")):
            what = f"`{f.key}`: {f.from_value} → {f.to_value}" if f.key else (f.action or "")
            saved = f" (saves {format_bytes(f.bytes_saved)})" if f.bytes_saved else ""
            lines.append(f"- {what}{saved} — {f.rationale}")
    if d.estimate_after is not None:
        after = d.estimate_after
        verdict = "fits" if d.fits_after else "does not fit"
        lines.append(f"\nAfter the changes the calculator estimates {format_bytes(after.peak_bytes)}"
                     + (f" of {format_bytes(after.budget_bytes)} usable" if after.budget_bytes else "") + f": it {verdict}.")
    return "\n".join(lines)


_STOPWORDS = {"this", "that", "what", "when", "with", "does", "doing", "much", "many", "memory", "there", "these", "those",
              "much", "need", "have", "from", "into", "about", "still", "again", "large", "huge", "high", "take", "takes"}


def _overlap(words: set[str], text: str) -> int:
    low = text.lower()
    return sum(1 for w in words if w in low)


def _what_if_markdown(what_if: dict) -> str:
    if "error" in what_if:
        return f"> what-if not evaluated: {what_if['error']}"
    est = what_if["estimate"]
    vals = ", ".join(f"{k}={v}" for k, v in what_if["values"].items())
    line = f"**What-if ({vals})**: estimated peak {format_bytes(est['peak_bytes'])}"
    if what_if.get("before_peak_bytes"):
        line += f" (was {format_bytes(what_if['before_peak_bytes'])})"
    if est.get("budget_bytes"):
        line += f" against {format_bytes(est['budget_bytes'])} usable on {est.get('gpu_name') or 'the GPU'}"
        line += " — **fits**." if est.get("fits") else " — **does not fit**."
    else:
        line += " (GPU unknown: tell me your GPU to check the fit)."
    extra = []
    if est.get("max_micro_batch"):
        extra.append(f"largest micro-batch that fits: {est['max_micro_batch']}")
    if est.get("max_seq_len"):
        extra.append(f"longest sequence that fits: {est['max_seq_len']}")
    return line + ("\n" + "; ".join(extra) + "." if extra else "")


def _hf_config(state: SessionState, setup) -> dict | None:
    """The model's config.json: what the user pasted, else the built-in registry's copy."""
    import json

    if state.request.model_config_json:
        try:
            data = json.loads(state.request.model_config_json)
            if isinstance(data, dict) and "model_type" in data:
                return data
        except ValueError:
            pass
    if setup.model_name:
        try:
            from ..tools.memory.registry import registry_config

            cfg = registry_config(setup.model_name)
            return dict(cfg) if cfg else None
        except Exception:  # noqa: BLE001 - unknown to the registry
            return None
    return None


def _probe_markdown(result, what: str) -> str:
    lines = [f"**Live probe** of {what} on {result.device_name or 'the device'}:"]
    if result.error:
        return lines[0] + f" failed — {result.error}"
    main = result.main
    if main is None:
        return lines[0] + " no trial ran."
    verdict = {"ok": "ran", "oom": "ran out of memory", "error": "failed", "timeout": "timed out"}[main.result]
    lines.append(f"- micro-batch {main.micro_batch}, seq len {main.seq_len}: {verdict}"
                 + (f"; peak allocated {format_bytes(main.peak_allocated_bytes)}, reserved {format_bytes(main.peak_reserved_bytes)}"
                    if main.peak_allocated_bytes else "")
                 + (" — fits within the margin." if main.fits_margin else " — does not fit within the margin." if main.result == "ok" else "."))
    if main.error and main.result != "ok":
        lines.append(f"- {main.error[:300]}")
    if result.estimate_peak_bytes:
        err = f" ({result.estimate_error:+.1%} vs measured)" if result.estimate_error is not None else ""
        lines.append(f"- calculator's estimate: {format_bytes(result.estimate_peak_bytes)}{err}")
    return "\n".join(lines)


def _what_if_from_config(state: SessionState, d: Diagnosis) -> str:
    """The what-if was written into the config and re-planned: its numbers are the new diagnosis' 'before'."""
    vals = ", ".join([f"{k}={v}" for k, v in state.overrides.items()] + ([f"method={state.method}"] if state.method else []))
    est = d.estimate
    line = f"**What-if ({vals})**: estimated peak {format_bytes(est.peak_bytes)}"
    if est.budget_bytes:
        line += f" against {format_bytes(est.budget_bytes)} usable" + (" — **fits** as is." if est.fits else " — **does not fit** as is.")
    if d.fixes and not est.fits:
        line += " The plan below makes it fit." if d.fits_after else " The plan below is the closest I can get."
    return line


def _help(state: SessionState) -> str:
    zh = state.language == "zh"
    head = "我能理解这些（中英文都可以）：" if zh else "I understand (English or Chinese):"
    rows = [f"- {example}" for _, example in UNDERSTOOD]
    have = []
    req = state.request
    have.append(("日志" if zh else "log") + (" ✓" if req.log_text else " ✗"))
    have.append(("配置" if zh else "config") + (f" ✓ ({state.main_config})" if state.main_config else " ✗"))
    have.append(("GPU" if zh else "GPU") + (f" ✓ ({(str(req.num_gpus) + ' × ') if req.num_gpus else ''}{req.gpu or ''}"
                                            f"{(' ' + format(req.gpu_memory_gib, 'g') + ' GiB') if req.gpu_memory_gib else ''})"
                                            if (req.gpu or req.gpu_memory_gib or req.num_gpus) else " ?"))
    if req.keep:
        have.append(("约束: " if zh else "keep: ") + ", ".join(req.keep))
    status = ("目前我有：" if zh else "So far I have: ") + "; ".join(have)
    paste = ("粘贴报错日志（或上传 .log 文件）开始诊断；再粘贴训练配置（YAML/JSON/shell）就能得到修改后的配置。" if zh else
             "Paste the error log (or attach the .log file) to start; add your training config (YAML / JSON / shell script) "
             "to get it back fixed.")
    return "\n".join([paste, "", head, *rows, "", status])


_TEXTS = {
    "reset": ("Started over: the log, config, hardware and constraints of this conversation are cleared.",
              "已重新开始：本次会话的日志、配置、硬件和约束都已清空。"),
    "updated": ("Updated: ", "已更新："),
    "solved": ("Glad it works — marked **solved**. This conversation can become a knowledge-base case "
               "(`ask-oom kb ingest --session <id>`).", "太好了，已标记为**已解决**。这段对话可以整理成知识库案例（`ask-oom kb ingest --session <id>`）。"),
    "unsolved": ("Sorry it still fails — marked **not solved**. Paste the new log (its numbers show what changed) "
                 "and I will re-plan from it; say e.g. \"use QLoRA\" or \"what if cutoff_len is 2048?\" to try a stronger change.",
                 "抱歉还是不行，已标记为**未解决**。请粘贴新的日志（其中的数字能说明变化），我会据此重新规划；也可以说“用QLoRA”或“cutoff_len改成2048会怎样”。"),
    "unsolved_replanned": ("Sorry it still fails — marked **not solved**. I re-planned with more headroom below; if it "
                           "still fails, paste the new log (its numbers show what changed).",
                           "抱歉还是不行，已标记为**未解决**。下面按更保守的显存余量重新规划了；如果仍然失败，请粘贴新的日志。"),
    "nothing_yet": ("There is no diagnosis yet to explain: paste the error log first.", "还没有诊断结果可以解释：请先粘贴报错日志。"),
    "no_diff": ("No fixed config yet: paste your training config (YAML / JSON / shell script) and I will rewrite it.",
                "还没有修改后的配置：请粘贴训练配置（YAML/JSON/shell），我来改写。"),
    "no_changes": ("No config changes are planned for this diagnosis (see its notes); this is your config as it stands"
                   " in this conversation.", "这次诊断没有计划修改配置（见诊断说明）；下面是本次会话中的当前配置。"),
    "same_config": ("Your config is unchanged.", "配置没有变化。"),
    "unknown": ("I did not understand that as a request I can act on.", "我没能理解这条消息。"),
    "need_log": ("Noted. Now paste the error log (the traceback with \"out of memory\" and the lines before it).",
                 "已记录。请粘贴报错日志（包含 \"out of memory\" 的 traceback 及其前面的几行）。"),
}


def _t(state: SessionState, key: str) -> str:
    en, zh = _TEXTS[key]
    return zh if state.language == "zh" else en


def _suggestions(state: SessionState) -> list[str]:
    """Follow-up prompts that make sense now (the UIs show them as buttons)."""
    zh = state.language == "zh"
    d = state.diagnosis
    req = state.request
    out: list[str] = []
    if not req.log_text and not state.configs:
        return ["帮助"] if zh else ["help"]
    if d is None or d.status == "no_memory_error":
        return ["为什么", "帮助"] if zh else ["why?", "help"]
    out.append("为什么？" if zh else "why?")
    if d.diff:
        out.append("再给我看一下diff" if zh else "show the diff again")
    if not (req.gpu or req.gpu_memory_gib) and (d.setup.gpu is None):
        out.append("我有4张A100 40G" if zh else "I have 4x A100 40GB")
    if d.setup.method == "full" and "full" not in req.keep:
        out.append("必须全量微调" if zh else "I must keep full fine-tuning")
        out.append("用QLoRA" if zh else "use QLoRA instead")
    seq_prov = d.setup.provenance.get("seq_len")
    if d.setup.seq_len >= 1024 and seq_prov is not None and seq_prov.origin != "default":
        half = d.setup.seq_len // 2
        out.append(f"cutoff_len改成{half}会怎样" if zh else f"what if cutoff_len is {half}?")
    out.append("解决了" if zh else "it worked")
    out.append("还是OOM" if zh else "still OOM")
    return out[:7]


def _needs(state: SessionState) -> list[Question]:
    d = state.diagnosis
    if d is not None:
        return list(d.questions)
    if not state.request.log_text and not state.configs:
        return [Question(slot="other", text="Paste the error log (the traceback with 'out of memory' and the lines before it).")]
    return []


__all__ = ["Conversation", "Reply"]
