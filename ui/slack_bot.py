"""The Slack bot (slack-bolt): answers mentions, DMs and follow-ups in threads it is part of.

One conversation per thread (session id `slack:<channel>:<thread_ts>`), kept in the agent's session store.
Bolt acknowledges each event at once and runs the listener in its worker pool, so Slack's 3-second
deadline holds however slow a diagnosis is; retries (X-Slack-Retry-Num, or a repeated event_id in
Socket Mode) are acknowledged and dropped so an answer is never posted twice.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from pathlib import PurePosixPath
from typing import Any, Callable, NamedTuple

from ..assistant.message_parts import NEW_INPUT_TURNS, unescape_slack
from ..assistant.render_slack import ACTIONS, SlackMessage, render_slack, render_slack_text
from ..assistant.texts import tr

log = logging.getLogger("ask_oom.slack")

ATTACHMENT_TYPES = (".log", ".txt", ".yaml", ".yml", ".json", ".sh", ".md")
MAX_ATTACHMENT_BYTES = 2 * 1024 * 1024
MAX_ATTACHMENTS = 5   # files read from one message; the rest are listed as skipped
_MENTION = re.compile(r"<@[A-Z0-9]{2,20}>")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_ANY_ACTION = re.compile(r".*")  # every button click reaches `on_action`, so an unknown one is answered, not a 404


class _SeenEvents:
    """A bounded set of recently handled event ids (Socket Mode redelivers without retry headers)."""

    def __init__(self, size: int = 2048):
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first_time(self, event_id: str | None) -> bool:
        if not event_id:
            return True
        with self._lock:
            if event_id in self._ids:
                return False
            self._ids[event_id] = None
            while len(self._ids) > self._size:
                self._ids.popitem(last=False)
            return True


def thread_session_id(channel: str, thread_ts: str) -> str:
    return f"slack:{channel}:{thread_ts}"


def create_app(conversation, settings, *, client=None, can_probe: bool = False):
    """Build the Bolt app. `conversation` is an assistant.conversation.Conversation; `client` a WebClient
    (tests point its base_url at a local Slack API server)."""
    from slack_bolt import App, BoltResponse
    from slack_sdk import WebClient

    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    if client is None:
        kwargs = {"base_url": settings.slack_api_url} if settings.slack_api_url else {}
        client = WebClient(token=token, **kwargs)
    app = App(client=client, signing_secret=secret, token_verification_enabled=False,
              ignoring_self_events_enabled=True, process_before_response=False)
    seen = _SeenEvents()

    @app.middleware
    def drop_retries(req, next):  # noqa: A002 - Bolt's middleware signature
        # Slack retries an event it thinks we missed; the first delivery is already being answered.
        if req.headers.get("x-slack-retry-num"):
            return BoltResponse(status=200, body="", headers={"x-slack-no-retry": "1"})
        event_id = (req.body or {}).get("event_id") if isinstance(req.body, dict) else None
        if not seen.first_time(event_id):
            return BoltResponse(status=200, body="")
        return next()

    def post_reply(channel: str, thread_ts: str, say_client, get_reply: Callable[[], tuple[Any, list["Skipped"]]],
                   fallback_language: str = "en") -> None:
        """Post the conversation's reply in the thread, in the session's language, with one line per attachment that
        was skipped (and why); a failure is still answered, in one line."""
        session_id = thread_session_id(channel, thread_ts)
        try:
            reply, skipped = get_reply()
            message = _message_for(reply, can_probe, _language(conversation, session_id, fallback_language), skipped)
        except Exception as exc:  # noqa: BLE001 - a failed answer must still tell the user, in one line
            log.warning("slack answer failed: %s", type(exc).__name__)
            message = render_slack_text(f"Sorry, I could not process that: {exc}")
        _post(say_client, channel, thread_ts, message)

    def answer(channel: str, thread_ts: str, text: str, files: list[dict], say_client) -> None:
        """A message (with its text attachments) is a turn of the thread's conversation; attachments that cannot be
        read are named in the reply. A message whose only content was skipped files gets just those lines."""
        session_id = thread_session_id(channel, thread_ts)

        def turn() -> tuple[Any, list[Skipped]]:
            contents, skipped = _download_files(say_client, files, token)
            if skipped and not contents and not text.strip():
                return None, skipped
            return conversation.handle(session_id, text, files=contents or None), skipped

        post_reply(channel, thread_ts, say_client, turn, "zh" if _CJK.search(text) else "en")

    @app.event("app_mention")
    def on_mention(event, client):
        text = unescape_slack(_MENTION.sub("", event.get("text") or "")).strip()
        answer(event["channel"], event.get("thread_ts") or event["ts"], text, event.get("files") or [], client)

    @app.event("message")
    def on_message(event, client, context):
        if event.get("bot_id") or event.get("subtype") not in (None, "file_share"):
            return
        text = event.get("text") or ""
        is_dm = event.get("channel_type") == "im"
        bot_user = context.get("bot_user_id")
        if not is_dm and bot_user and f"<@{bot_user}>" in text:
            return  # the app_mention event answers this one
        thread_ts = event.get("thread_ts")
        in_our_thread = bool(thread_ts) and conversation.store.get(thread_session_id(event["channel"], thread_ts)) is not None
        if not (is_dm or in_our_thread):
            return
        answer(event["channel"], thread_ts or event["ts"], unescape_slack(_MENTION.sub("", text)).strip(),
               event.get("files") or [], client)

    @app.action(_ANY_ACTION)
    def on_action(ack, body, action, client):
        """A button click is the typed action its action_id maps to; an unknown id (marked `slack:`, so it can never
        pass for an action) gets the conversation's clear answer in the thread."""
        ack()
        msg = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        thread_ts = msg.get("thread_ts") or msg.get("ts") or (body.get("container") or {}).get("message_ts")
        if not channel or not thread_ts:
            log.warning("slack action without a channel or message: ignored")
            return
        action_id = str((action or {}).get("action_id") or "")
        typed = ACTIONS.get(action_id)
        session_id = thread_session_id(channel, thread_ts)
        post_reply(channel, thread_ts, client, lambda: (conversation.act(session_id, typed if typed else f"slack:{action_id}"), []))

    return app


class Skipped(NamedTuple):
    """An attachment not read: its name and why, as a key of the texts table with its values."""

    name: str
    why: str
    values: dict


def skipped_lines(skipped: list[Skipped], language: str = "en") -> list[str]:
    """One line per skipped attachment, in the conversation's language."""
    return [tr(language, "sl_skipped", name=s.name.replace("`", "'")[:120], why=tr(language, s.why, **s.values))
            for s in skipped]


def _language(conversation, session_id: str, fallback: str = "en") -> str:
    """The thread's conversation language (the turn just answered set it); `fallback` without a session."""
    try:
        session = conversation.store.get(session_id)
    except Exception:  # noqa: BLE001 - an unreadable session must not stop the answer
        session = None
    return session.state.language if session is not None else fallback


def _message_for(reply: Any, can_probe: bool, language: str = "en", skipped: list[Skipped] | None = None) -> SlackMessage:
    lines = skipped_lines(skipped or [], language)
    if reply is None:
        return render_slack_text("\n".join(lines))
    diagnosis = getattr(reply, "diagnosis", None)
    if diagnosis is not None and getattr(reply, "show_diagnosis", True):
        # a new log, config or snapshot gets the diagnosis' summary; a follow-up that re-planned shows what changed
        follow_up = getattr(reply, "intent", "") not in NEW_INPUT_TURNS
        message = render_slack(diagnosis, markdown=reply.markdown, can_probe=can_probe, language=language,
                               follow_up=follow_up)
    else:
        message = render_slack_text(reply.markdown)
    if lines:   # the skipped files first, so the user sees at once what was not read
        note = "\n".join(lines)
        message = message.model_copy(update={"text": (note + "\n" + message.text)[:3000],
                                             "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": note[:2900]}},
                                                        *message.blocks]})
    return message


def _post(client, channel: str, thread_ts: str, message: SlackMessage) -> None:
    client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=message.text, blocks=message.blocks)
    for f in message.files:
        client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=f.content, filename=f.filename, title=f.title)


def _download_files(client, files: list[dict], token: str | None) -> tuple[dict[str, str], list[Skipped]]:
    """Text attachments (.log/.txt/.yaml/.yml/.json/.sh/.md) of a message, by file name, and the ones skipped with
    why: too large, binary, an unsupported type, a failed download, or past the first MAX_ATTACHMENTS."""
    import httpx

    from .inputs import looks_binary

    contents: dict[str, str] = {}
    skipped: list[Skipped] = []
    limit = {"limit": MAX_ATTACHMENT_BYTES // 2**20}
    for i, f in enumerate(files):
        name = PurePosixPath(f.get("name") or "file").name
        if i >= MAX_ATTACHMENTS:
            skipped.append(Skipped(name, "sl_skip_count", {"limit": MAX_ATTACHMENTS}))
            continue
        url = f.get("url_private_download") or f.get("url_private")
        if not name.lower().endswith(ATTACHMENT_TYPES):
            skipped.append(Skipped(name, "sl_skip_type", {"types": " ".join(ATTACHMENT_TYPES)}))
            continue
        if int(f.get("size") or 0) > MAX_ATTACHMENT_BYTES:
            skipped.append(Skipped(name, "sl_skip_size", limit))
            continue
        if not url:
            skipped.append(Skipped(name, "sl_skip_download", {"error": "no download link"}))
            continue
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = b""
        try:
            with httpx.stream("GET", url, headers=headers, timeout=20, follow_redirects=True) as resp:
                if resp.status_code != 200:
                    skipped.append(Skipped(name, "sl_skip_download", {"error": f"HTTP {resp.status_code}"}))
                    continue
                for chunk in resp.iter_bytes():
                    data += chunk
                    if len(data) > MAX_ATTACHMENT_BYTES:
                        break
        except httpx.HTTPError as exc:
            skipped.append(Skipped(name, "sl_skip_download", {"error": type(exc).__name__}))
            continue
        if len(data) > MAX_ATTACHMENT_BYTES:
            skipped.append(Skipped(name, "sl_skip_size", limit))
        elif looks_binary(data):
            skipped.append(Skipped(name, "sl_skip_binary", {}))
        else:
            contents[name] = data.decode("utf-8", errors="replace")
    return contents, skipped


def http_asgi_app(bolt_app):
    """The Events API endpoint (POST /slack/events) as an ASGI app, for HTTP mode behind uvicorn."""
    from slack_bolt.adapter.starlette import SlackRequestHandler
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    handler = SlackRequestHandler(bolt_app)

    async def events(request: Request):
        return await handler.handle(request)

    async def health(_request: Request):
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"]), Route("/healthz", health)])
