"""The Gradio chat UI: paste a log or drop files; see the diagnosis, a before/after memory chart, the
diff and the fixed config (copy / download), similar cases, follow-up suggestions, and feedback.

The UI only collects input and renders: every answer comes from assistant.conversation.Conversation.
Each browser gets its own session id, so no user sees another's conversation. The id is kept in the browser's
storage (and may be given as `?session=ID` in the URL), so a reload or a server restart resumes the conversation
from the SQLite session store.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import gradio as gr  # at module level: Gradio reads the `gr.LikeData` annotation of the feedback handler

from ..assistant.reply import Action
from ..tools.configs.schema import fence_language, fixed_file_name
from ..tools.errors import InputError
from .chart import held_bars, memory_chart_svg
from .errors import UserError
from .inputs import SNAPSHOT_SUFFIXES, is_snapshot_file, read_snapshots

UPLOAD_TYPES = [".log", ".txt", ".yaml", ".yml", ".json", ".sh", ".md", *SNAPSHOT_SUFFIXES]

INTRO = """# ask-oom
Paste the error log of a training run that ran out of GPU memory (and your training config, if you have it),
or drop the files. ask-oom says what ran out and why, shows similar documented cases, and returns your config fixed."""


def upload_root() -> Path:
    """Where Gradio stores uploads; the only place this server reads user files from."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def read_uploads(paths: list[str], max_bytes: int) -> tuple[dict[str, str], list]:
    """Uploaded files by name, checked: inside the upload area, an allowed type, within the size limit; memory
    snapshots apart, read as plain data (ui/inputs.read_snapshots), never as text."""
    root = upload_root()
    files: dict[str, str] = {}
    snapshot_paths: list[str] = []
    for raw in paths:
        path = Path(raw).resolve()
        if root not in path.parents:
            raise InputError(f"refusing to read {path.name}: not an uploaded file")
        if path.suffix.lower() not in UPLOAD_TYPES:
            raise InputError(f"{path.name}: unsupported file type (use {', '.join(UPLOAD_TYPES)})")
        if path.stat().st_size > max_bytes:
            raise InputError(f"{path.name} is larger than the {max_bytes // 2**20} MiB upload limit")
        if is_snapshot_file(path.name):
            snapshot_paths.append(str(path))
            continue
        files[path.name] = path.read_bytes().decode("utf-8", errors="replace")
    try:
        snapshots = read_snapshots(snapshot_paths)
    except UserError as exc:
        raise InputError(str(exc)) from None
    return files, snapshots


def cases_markdown(diagnosis: Any) -> str:
    if diagnosis is None or not diagnosis.similar_cases:
        return "_No similar documented case yet._"
    lines = []
    for c in diagnosis.similar_cases:
        link = f"[{c.title}]({c.source})" if c.source.startswith("http") else f"{c.title} — _{c.source}_"
        why = f" · {'; '.join(c.why_similar[:3])}" if c.why_similar else ""
        fix = f"\n  - fixed by: {c.fix_summary}" if c.fix_summary else ""
        lines.append(f"- {link} (`{c.primary_cause}`, score {c.score:.2f}){why}{fix}")
    return "\n".join(lines)


def deepspeed_download(diagnosis: Any, download_dir: Path):
    """The fixed DeepSpeed config as a download, under the name the fixed config points at (none: not interactive)."""
    if diagnosis is None:
        return gr.skip()
    if not diagnosis.fixed_deepspeed:
        return gr.update(value=None, interactive=False)
    download_dir.mkdir(parents=True, exist_ok=True)
    path = download_dir / diagnosis.fixed_deepspeed_name
    path.write_text(diagnosis.fixed_deepspeed, encoding="utf-8")
    return gr.update(value=str(path), interactive=True, label=f"Download {path.name}")


def panel_updates(diagnosis: Any, download_dir: Path):
    """(chart html, fixed config code, diff, download path, cases markdown) for one diagnosis."""
    if diagnosis is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    est = diagnosis.estimate
    held = held_bars(diagnosis.reconciliation)
    chart = memory_chart_svg(est, None if held else diagnosis.estimate_after, est.gpu_bytes if est else None,
                             budget_bytes=est.budget_bytes if est else None, held=held)
    fmt = diagnosis.fixed_config_format or ""
    download = None
    if diagnosis.fixed_config:
        download_dir.mkdir(parents=True, exist_ok=True)
        download = download_dir / fixed_file_name(fmt)
        download.write_text(diagnosis.fixed_config, encoding="utf-8")
    lang = fence_language(fmt)
    code = gr.update(value=diagnosis.fixed_config or "", language={"bash": "shell", "": None}.get(lang, lang))  # Gradio's names
    return (chart, code, diagnosis.diff or "", gr.update(value=str(download) if download else None,
            interactive=download is not None), cases_markdown(diagnosis))


# Code blocks wrap inside their panel instead of running past it (a long `deepspeed … --arg` line of a shell config).
PAGE_CSS = """
#chat pre, #chat code, #cases pre, #cases code {
  white-space: pre-wrap !important; overflow-wrap: anywhere !important; word-break: normal; max-width: 100%;
}
#chat pre { overflow-x: hidden !important; }
#chat .message-content table { display: block; max-width: 100%; overflow-x: auto; }
"""

# Page script run once on load: adds PAGE_CSS, and opens each new answer at its top (its summary) instead of at its
# bottom: the Chatbot does not autoscroll, and when a new answer appears its first line is scrolled to the top of the
# conversation panel.
PAGE_JS = """
() => {
  if (!document.getElementById('ask-oom-style')) {
    const style = document.createElement('style');
    style.id = 'ask-oom-style';
    style.textContent = %s;
    document.head.appendChild(style);
  }
  const attach = (tries) => {
    const chat = document.querySelector('#chat');
    if (!chat) { if (tries > 0) setTimeout(() => attach(tries - 1), 200); return; }
    if (chat.dataset.askOomScroll) return;
    chat.dataset.askOomScroll = '1';
    let shown = null;
    let moved = false;   // the user scrolled: stop holding the answer's top in place
    for (const ev of ['wheel', 'touchstart', 'keydown', 'mousedown']) chat.addEventListener(ev, () => { moved = true; });
    const openAtTop = () => {
      const rows = chat.querySelectorAll('.message-row.bot-row');
      const row = rows[rows.length - 1];
      if (!row || row === shown) return;
      shown = row;
      moved = false;
      const box = row.closest('[role=log]');
      if (!box) return;
      const until = performance.now() + 2000;   // the messages above may still grow while they render
      const hold = () => {
        if (moved || shown !== row) return;
        box.scrollTop += row.getBoundingClientRect().top - box.getBoundingClientRect().top;
        if (performance.now() < until) requestAnimationFrame(hold);
      };
      hold();
    };
    new MutationObserver(() => requestAnimationFrame(openAtTop)).observe(chat, {childList: true, subtree: true});
    openAtTop();
  };
  attach(50);
}
""" % json.dumps(PAGE_CSS)

SESSION_STORAGE_KEY = "ask_oom_session"
SESSION_QUERY_PARAM = "session"
# Puts the session id in the tab's address without reloading (the same parameter `requested_session` reads).
SESSION_URL_JS = ("(sid) => { if (sid) { const u = new URL(window.location.href); "
                  f"u.searchParams.set({SESSION_QUERY_PARAM!r}, sid); history.replaceState(null, '', u); }} return []; }}")


def browser_secret(settings) -> str:
    """The key Gradio encrypts the stored session id with in the browser. It must be the same after a restart (a
    random one, Gradio's default, would make every stored id unreadable), so it derives from the session database's
    path; the id itself is what guards a conversation."""
    return hashlib.sha256(f"ask-oom:{Path(settings.session_db).resolve()}".encode()).hexdigest()[:32]


_WEB_SESSION_ID = re.compile(r"[0-9a-f]{32}")  # the ids this UI makes (uuid4 hex): never a Slack thread's guessable id


def requested_session(stored: str | None, query: dict | None) -> str | None:
    """The session a page load resumes: `?session=ID` in the URL first, else the id kept in the browser's storage;
    only an id of the web UI's own form (a Slack thread's id is guessable from its channel and timestamp)."""
    wanted = str((query or {}).get(SESSION_QUERY_PARAM) or stored or "")
    return wanted if _WEB_SESSION_ID.fullmatch(wanted) else None


def build_app(conversation, settings, *, can_probe: bool | None = None):
    """The Blocks app. `conversation` answers; `settings` gives upload limits."""
    if can_probe is None:
        from ..tools.cuda_available import cuda_available

        can_probe = cuda_available()
    downloads = Path(tempfile.gettempdir()) / "ask-oom-downloads"

    def render(reply, shown: str | None, history: list, session_id: str, *, clear_input: bool = True):
        """The outputs of one answered turn: the chat with the user's turn (`shown`; None: none to show) and the
        reply, the input box (cleared after a sent message, kept after a click), the panels, the follow-ups and
        which of them are typed actions."""
        turn = [{"role": "user", "content": shown}] if shown is not None else []
        history = history + turn + [{"role": "assistant", "content": reply.markdown}]
        samples = (getattr(reply, "suggestions", None) or [])[:6]
        chips = {text: str(action) for text, action in (getattr(reply, "suggestion_actions", None) or {}).items()}
        return (history, None if clear_input else gr.skip(), session_id,
                *panel_updates(reply.diagnosis, downloads / session_id), gr.update(samples=[[s] for s in samples]), chips,
                deepspeed_download(reply.diagnosis, downloads / session_id))

    def respond(message: dict, history: list, session_id: str | None):
        session_id = session_id or uuid.uuid4().hex
        text = (message or {}).get("text") or ""
        try:
            files, snapshots = read_uploads([f if isinstance(f, str) else f.get("path")
                                             for f in (message or {}).get("files", [])], settings.max_upload_bytes)
            if not text.strip() and not files and not snapshots:
                raise InputError("paste a log or a config, or attach the files")
            reply = conversation.handle(session_id, text, files=files or None, snapshots=snapshots or None)
        except InputError as exc:
            history = history + [{"role": "user", "content": text or "(files)"},
                                 {"role": "assistant", "content": f"⚠️ {exc}"}]
            return (history, None, session_id, *[gr.skip()] * 8)
        names = [*files, *(s.name for s in snapshots)]
        shown = text if text.strip() else "(uploaded " + ", ".join(names) + ")"
        if names and text.strip():
            shown += "\n\n_(files: " + ", ".join(names) + ")_"
        return render(reply, shown, history, session_id)

    def act(action: Action, label: str, history: list, session_id: str | None):
        """A button click: the typed action, answered in the conversation's language; `label` is what the chat shows."""
        session_id = session_id or uuid.uuid4().hex
        return render(conversation.act(session_id, action), label, history, session_id, clear_input=False)

    def restore(stored: str | None, request: gr.Request):
        """A page load: the conversation of the session in the URL or the browser's storage, from the session store
        (history, panels, follow-ups); a fresh page when there is none."""
        wanted = requested_session(stored, dict(request.query_params) if request is not None else None)
        resumed = conversation.resume(wanted) if wanted else None
        if resumed is None:
            return ([], gr.skip(), None, *[gr.skip()] * 5, gr.update(samples=[]), {}, gr.skip())
        turns, reply = resumed
        history = [{"role": role, "content": text} for role, text in turns]
        samples = reply.suggestions[:6]
        chips = {text: str(action) for text, action in reply.suggestion_actions.items()}
        return (history, gr.skip(), wanted, *panel_updates(reply.diagnosis, downloads / wanted),
                gr.update(samples=[[x] for x in samples]), chips, deepspeed_download(reply.diagnosis, downloads / wanted))

    def feedback(data: gr.LikeData, history: list, session_id: str | None):
        """Like / dislike on an answer: the Solved / Still-OOM actions (a re-plan refreshes the panels)."""
        if not session_id:
            return (history, *[gr.skip()] * 10)
        reply = conversation.act(session_id, Action.SOLVED if data.liked else Action.STILL_OOM)
        return render(reply, None, history, session_id, clear_input=False)

    def follow_up(sample: list, history: list, session_id: str | None, actions: dict | None):
        """A follow-up chip: its typed action when it is one (why? / show the diff / solved / still OOM), else its text."""
        action = (actions or {}).get(sample[0])
        if action:
            return act(Action(action), sample[0], history, session_id)
        return respond({"text": sample[0], "files": []}, history, session_id)

    with gr.Blocks(title="ask-oom", analytics_enabled=False) as demo:
        session = gr.State(None)
        # the id kept in the browser (localStorage): a reload or a server restart resumes the conversation
        saved = gr.BrowserState(None, storage_key=SESSION_STORAGE_KEY, secret=browser_secret(settings))
        session_id_box = gr.Textbox(visible=False, elem_id="session-id")   # the id where the page's script can read it
        chip_actions = gr.State({})  # the shown follow-ups that are typed actions: text → Action value
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Conversation", height=560, elem_id="chat", feedback_options=("Like", "Dislike"),
                                  buttons=["copy"], autoscroll=False)   # PAGE_JS opens an answer at its top
                box = gr.MultimodalTextbox(placeholder="Paste an OOM log or config here, drop files, or ask a follow-up…",
                                           file_types=UPLOAD_TYPES, file_count="multiple", lines=6, max_lines=20,
                                           label="Log, config or question",
                                           elem_id="input", submit_btn="Diagnose")
                suggestions = gr.Dataset(components=[gr.Textbox(visible=False)], samples=[], label="Follow-ups",
                                         elem_id="suggestions", samples_per_page=6)
                with gr.Row():
                    probe = gr.Button("Run live probe", visible=can_probe, elem_id="probe")
                    solved = gr.Button("Solved: it fits now", elem_id="solved", size="sm")
                    unsolved = gr.Button("Still out of memory", elem_id="unsolved", size="sm")
            with gr.Column(scale=2):
                chart = gr.HTML(memory_chart_svg(None, None, None), label="GPU memory: before / after", elem_id="chart")
                with gr.Tab("Fixed config"):
                    fixed = gr.Code(label="Fixed config", interactive=False, elem_id="fixed-config", buttons=["copy"],
                                    wrap_lines=True)
                    download = gr.DownloadButton("Download fixed config", interactive=False, elem_id="download")
                    download_ds = gr.DownloadButton("Download fixed DeepSpeed config", interactive=False,
                                                    elem_id="download-deepspeed")
                with gr.Tab("Diff"):
                    diff = gr.Code(label="Diff", interactive=False, elem_id="diff", buttons=["copy"], wrap_lines=True)
                with gr.Tab("Similar cases"):
                    cases = gr.Markdown("_No similar documented case yet._", elem_id="cases")
        outputs = [chat, box, session, chart, fixed, diff, download, cases, suggestions, chip_actions, download_ds]
        demo.load(restore, [saved], outputs, api_name=False)
        demo.load(None, None, None, js=PAGE_JS)
        # ...and in this tab's address (?session=ID), so a reload resumes this tab's conversation even when another
        # tab has started a newer one since (the browser's storage is shared by the tabs)
        session.change(lambda sid: (sid, sid), [session], [saved, session_id_box], api_name=False)
        session_id_box.change(None, [session_id_box], None, js=SESSION_URL_JS, api_name=False)
        box.submit(respond, [box, chat, session], outputs, api_name="chat")
        suggestions.click(follow_up, [suggestions, chat, session, chip_actions], outputs, api_name=False)
        chat.like(feedback, [chat, session], outputs, api_name=False)
        for button, action in ((solved, Action.SOLVED), (unsolved, Action.STILL_OOM), (probe, Action.PROBE)):
            button.click(_clicked(act, action, button.value), [chat, session], outputs, api_name=False)
    demo.queue(default_concurrency_limit=8, max_size=64)
    return demo


def _clicked(act, action: Action, label: str):
    """The click handler of one action button (a function per button: Gradio reads its parameters)."""
    def on_click(history: list, session_id: str | None):
        return act(action, label, history, session_id)
    return on_click


def launch(conversation, settings, *, host: str | None = None, port: int | None = None, prevent_thread_lock: bool = False):
    demo = build_app(conversation, settings)
    demo.launch(server_name=host or settings.web_host, server_port=port or settings.web_port,
                max_file_size=settings.max_upload_bytes, show_error=False, prevent_thread_lock=prevent_thread_lock,
                quiet=True)
    return demo
