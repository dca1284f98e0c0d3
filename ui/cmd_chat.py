"""`ask-oom chat`: the conversation in a terminal (a prompt loop), or one turn per call for scripts (`--json`).

Every turn goes through the same conversation engine and the same session store as the web UI and the Slack bot
(ui/serve.make_conversation over the configured ASK_OOM_SESSION_DB), so a session started here can be continued
there (the web UI opens it with ?session=ID) and the other way round."""

from __future__ import annotations

import argparse
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from .errors import EXIT_INTERNAL, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, UserError

HELP = "talk to ask-oom in the terminal: paste a log, then ask follow-ups (--json: one turn per call, for scripts)"
EPILOG = """examples:
  ask-oom chat                                        a prompt: paste the log (end with an empty line), then ask
  ask-oom chat --attach train.log --attach train.yaml
  ask-oom chat --json --attach train.log < /dev/null  one turn; prints {"session": ID, "reply", "language", "state", ...}
  echo "we have 4x A100 40GB" | ask-oom chat --session ID --json
  echo "what if zero 3" | ask-oom chat --session ID --json
in the prompt: /attach FILE adds a file to the next message, /quit (or Ctrl-D) ends.
--json object: session, reply, language (en|zh), state {gpus, nodes, gpu_memory_gib, gpu_name, host_ram_gib,
  what_if, keep, last_intent}, diagnosis (the `diagnose --json` object, or null), error (null, or one line).
sessions live in ASK_OOM_SESSION_DB (default ~/.local/state/ask-oom/sessions.sqlite3), shared with the web UI and
the Slack bot; --store-dir DIR keeps them in DIR instead.

exit codes: 0 answered, 1 internal error, 2 bad input (empty message, missing, unreadable or binary attachment, a
            symbolic link without --allow-symlinks, input the conversation cannot use), 4 the session is busy
            (being updated by another process; send again)
"""

MAX_MESSAGE_BYTES = 16 * 1024 * 1024   # the conversation's own upload limit (Settings.max_upload_bytes) answers past it
_CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".sh", ".py", ".toml", ".cfg", ".ini")
_CONVERSATIONS: dict[str, Any] = {}    # one Conversation per session database in this process (index loaded once)
_CONVERSATIONS_LOCK = threading.Lock()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session", metavar="ID", help="continue this conversation (default: a new one; its id is printed)")
    p.add_argument("--attach", metavar="FILE", action="append", default=[],
                   help="a log or config to send with the (first) message; repeat for more files")
    p.add_argument("-m", "--message", metavar="TEXT", help="the message (default: stdin)")
    p.add_argument("--json", action="store_true", help="answer one turn and print one JSON object (schema in --help)")
    p.add_argument("--store-dir", metavar="DIR", help="keep sessions in DIR (default: the ASK_OOM_SESSION_DB folder)")
    p.add_argument("--allow-symlinks", action="store_true",
                   help="read attachments that are symbolic links (refused by default; special files always are)")


# -- one turn (scripts, evaluations) -------------------------------------------------------------


def chat_turn(store_dir: Path | None, session_id: str | None, message: str, attachments: list[Path], *,
              allow_symlinks: bool = False) -> dict[str, Any]:
    """Answer one turn of a conversation and return the `--json` object:
    {session, reply, language, state (assistant/chat_state.public_state), diagnosis (render_json, or None), error}.

    `store_dir`: the folder of the session database (None: the configured one); `session_id` None starts a new
    conversation (a new id, returned as `session`). Bad input (an empty message without attachments, a missing,
    unreadable or binary attachment, a symbolic link without `allow_symlinks`) raises UserError (exit 2)."""
    from ..assistant.chat_state import public_state
    from ..assistant.render import render_json

    from .inputs import is_snapshot_file, read_snapshots

    snapshots = read_snapshots([str(a) for a in attachments if is_snapshot_file(str(a))], allow_symlinks=allow_symlinks)
    files = read_attachments([str(a) for a in attachments if not is_snapshot_file(str(a))], allow_symlinks=allow_symlinks)
    if not (message or "").strip() and not files and not snapshots:
        raise UserError("empty message: write a question, paste a log, or attach a file (--attach FILE)")
    conversation = _conversation(store_dir)
    session_id = session_id or uuid.uuid4().hex
    reply = conversation.handle(session_id, message or "", files=files or None, snapshots=snapshots or None)
    session = conversation.store.get(reply.session_id) if reply.session_id == session_id else None
    state = session.state if session is not None else None
    return {
        "session": session_id,
        "reply": reply.markdown,
        "language": state.language if state is not None else "en",
        "state": public_state(state, reply.intents) if state is not None else None,
        "diagnosis": render_json(reply.diagnosis) if reply.diagnosis is not None else None,
        "error": reply.error,
    }


def read_attachments(paths: list[str], *, allow_symlinks: bool = False) -> dict[str, str]:
    """Attachments by file name, read with the CLI's readers: a config (by its suffix) as a config (2 MiB), anything
    else as a log (its end kept past the upload limit). UserError (exit 2) for a missing, empty, binary or special
    file, or a symbolic link without `allow_symlinks`."""
    from .inputs import read_config_text, read_log_bytes

    files: dict[str, str] = {}
    for path in paths:
        name = Path(path).name
        if name.lower().endswith(_CONFIG_SUFFIXES):
            text = read_config_text(path, allow_symlinks=allow_symlinks)
            if not text.strip():
                raise UserError(f"attachment {path} is empty")
        else:
            data, _truncated = read_log_bytes(path, MAX_MESSAGE_BYTES, allow_symlinks=allow_symlinks)
            text = data.decode("utf-8", errors="replace")
        files[name] = text
    return files


def _conversation(store_dir: Path | None):
    """The conversation over the session store the web UI and the Slack bot use (ui/serve.make_conversation), or over
    the same database file name in `store_dir`; one per database in this process."""
    from ..assistant.settings import load_settings
    from .serve import make_conversation

    settings = load_settings()
    if store_dir is not None:
        settings = settings.model_copy(update={"session_db": Path(store_dir).expanduser() / settings.session_db.name})
    key = str(Path(settings.session_db).expanduser().resolve())
    with _CONVERSATIONS_LOCK:
        if key not in _CONVERSATIONS:
            _CONVERSATIONS[key] = make_conversation(settings)
        return _CONVERSATIONS[key]


def _exit_code(result: dict[str, Any]) -> int:
    """0 answered; 4 the session was busy; 1 an internal error; 2 input the conversation could not use."""
    error = result.get("error")
    if not error:
        return EXIT_OK
    if error == "session busy":
        return EXIT_UNAVAILABLE
    if str(result.get("reply", "")).startswith("**Internal error"):
        return EXIT_INTERNAL
    return EXIT_USAGE


# -- the command -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    store_dir = Path(args.store_dir) if args.store_dir else None
    if args.session is not None:
        from ..assistant.session import check_session_id

        check_session_id(args.session)   # InputError → one line, exit 2
    interactive = not args.json and args.message is None and sys.stdin is not None and sys.stdin.isatty()
    if interactive:
        return _interactive(store_dir, args.session, args.attach, args.allow_symlinks)
    message = args.message if args.message is not None else _read_stdin(required=not args.attach)
    result = chat_turn(store_dir, args.session, message, [Path(a) for a in args.attach], allow_symlinks=args.allow_symlinks)
    if args.json:
        from .output import print_json

        print_json(result)
    else:
        from .output import print_markdown

        print_markdown(result["reply"])
        print(f"(session {result['session']}: continue with ask-oom chat --session {result['session']})", file=sys.stderr)
    code = _exit_code(result)
    if code != EXIT_OK and not args.json:
        print(f"ask-oom: error: {result['error']}", file=sys.stderr)
    return code


def _read_stdin(*, required: bool) -> str:
    """The message piped in (to EOF; a log paste keeps its empty lines). UserError when it is missing, binary or
    empty and no file is attached."""
    from .inputs import _read_capped, looks_binary

    if sys.stdin is None or sys.stdin.isatty():
        if required:
            raise UserError("no message: pipe one in (echo 'why?' | ask-oom chat --json), pass -m TEXT, or --attach FILE")
        return ""
    data, _ = _read_capped(sys.stdin.buffer, MAX_MESSAGE_BYTES)
    if looks_binary(data):
        raise UserError("message looks binary, not text: paste the log or the question as text")
    if required and not data.strip():
        raise UserError("empty message: write a question, paste a log, or attach a file (--attach FILE)")
    return data.decode("utf-8", errors="replace")


# -- the prompt loop -------------------------------------------------------------------------------

_PROMPT = "you> "
_BANNER = ("ask-oom chat — paste the error log (end a paste with an empty line) or ask a question.\n"
           "/attach FILE adds a file to your next message; /quit or Ctrl-D ends. Session: {sid}")


def _check_attachments(paths: list[str], allow_symlinks: bool) -> None:
    """Read each attachment as the turn will (a memory snapshot as plain data, anything else as text): a bad one is a
    one-line error now, not after the message is typed."""
    from .inputs import is_snapshot_file, read_snapshots

    read_snapshots([p for p in paths if is_snapshot_file(p)], allow_symlinks=allow_symlinks)
    read_attachments([p for p in paths if not is_snapshot_file(p)], allow_symlinks=allow_symlinks)


def _interactive(store_dir: Path | None, session_id: str | None, attach: list[str], allow_symlinks: bool) -> int:
    """A conversation at the terminal: read a message, print the reply rendered as the CLI renders Markdown."""
    from .output import print_markdown

    session_id = session_id or uuid.uuid4().hex
    pending = list(attach)
    _check_attachments(pending, allow_symlinks)   # a bad --attach is exit 2 before the prompt
    print(_BANNER.format(sid=session_id))
    while True:
        try:
            message = read_message(sys.stdin, prompt=_PROMPT)
        except KeyboardInterrupt:
            print()
            continue
        if message is None:   # Ctrl-D
            print()
            break
        command = message.strip()
        if command in ("/quit", "/exit", "/q"):
            break
        if command.startswith("/attach"):
            path = command[len("/attach"):].strip()
            try:
                _check_attachments([path], allow_symlinks)
            except UserError as exc:
                print(f"ask-oom: {exc}")
                continue
            pending.append(path)
            print(f"(attached {Path(path).name}: it goes with your next message; press Enter to send it alone)")
            continue
        if not command and not pending:
            continue
        try:
            result = chat_turn(store_dir, session_id, message, [Path(p) for p in pending], allow_symlinks=allow_symlinks)
        except UserError as exc:
            print(f"ask-oom: {exc}")
            continue
        pending = []
        print_markdown(result["reply"])
    print(f"(session {session_id}: continue with ask-oom chat --session {session_id})")
    return EXIT_OK


def read_message(stream, *, prompt: str = _PROMPT, burst_wait_s: float = 0.05) -> str | None:
    """One message from the terminal; None at end of input. A single typed line is sent as it is; a paste (lines
    arriving together, e.g. a log) is read until an empty line typed after it, or the end of input."""
    line = _read_line(stream, prompt)
    if line is None:
        return None
    lines = [line]
    lines += _burst(stream, burst_wait_s)
    if len(lines) == 1:
        return line
    print(f"(pasted {len(lines)} lines — press Enter on an empty line to send, or keep pasting)")
    while True:
        more = _read_line(stream, "")
        if more is None:
            break
        if not more.strip():
            follow = _burst(stream, burst_wait_s)
            if not follow:
                break
            lines += [more, *follow]
            continue
        lines.append(more)
        lines += _burst(stream, burst_wait_s)
    return "\n".join(lines)


def _read_line(stream, prompt: str) -> str | None:
    if stream is sys.stdin and prompt:
        try:
            return input(prompt)
        except EOFError:
            return None
    if prompt:
        print(prompt, end="", flush=True)
    raw = stream.readline()
    return None if raw == "" else raw.rstrip("\r\n")


def _burst(stream, wait_s: float) -> list[str]:
    """The lines already waiting on the stream (the rest of a paste)."""
    import select

    out: list[str] = []
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return out
    while True:
        try:
            ready, _, _ = select.select([fd], [], [], wait_s)
        except (OSError, ValueError):
            return out
        if not ready:
            return out
        raw = stream.readline()
        if raw == "":
            return out
        out.append(raw.rstrip("\r\n"))


__all__ = ["chat_turn", "read_attachments", "read_message"]
