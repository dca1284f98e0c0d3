"""`ask-oom ui`: start the Gradio chat UI."""

from __future__ import annotations

import argparse

HELP = "start the web UI (Gradio chat) on http://HOST:PORT"
EPILOG = """examples:
  ask-oom ui                       # http://127.0.0.1:7860
  ask-oom ui --host 0.0.0.0 --port 8080
settings: ASK_OOM_WEB_HOST, ASK_OOM_WEB_PORT, ASK_OOM_MAX_UPLOAD_BYTES, ASK_OOM_SESSION_DB (see README)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes it on the network)")
    p.add_argument("--port", type=int, help="port (default 7860)")


def run(args: argparse.Namespace) -> int:
    from ..assistant.settings import load_settings
    from .serve import make_conversation
    from .web import launch

    settings = load_settings()
    conversation = make_conversation(settings)
    print(f"ask-oom web UI on http://{args.host or settings.web_host}:{args.port or settings.web_port} (Ctrl-C to stop)")
    launch(conversation, settings, host=args.host, port=args.port)
    return 0
