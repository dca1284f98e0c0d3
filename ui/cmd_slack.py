"""`ask-oom slack`: run the Slack bot (Socket Mode by default, or the Events API over HTTP)."""

from __future__ import annotations

import argparse

from .errors import UserError

HELP = "run the Slack bot (Socket Mode by default; --http for the Events API)"
EPILOG = """examples:
  SLACK_BOT_TOKEN=xoxb-… SLACK_APP_TOKEN=xapp-… ask-oom slack                 # Socket Mode, no public URL
  SLACK_BOT_TOKEN=xoxb-… SLACK_SIGNING_SECRET=… ask-oom slack --http --port 3000   # POST /slack/events
tokens are read from the environment only and never logged
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--http", action="store_true", help="serve the Events API over HTTP instead of Socket Mode")
    p.add_argument("--host", default="0.0.0.0", help="HTTP mode: interface to bind (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=3000, help="HTTP mode: port (default 3000)")


def run(args: argparse.Namespace) -> int:
    from ..assistant.settings import load_settings
    from ..tools.cuda_available import cuda_available
    from .serve import make_conversation
    from .slack_bot import create_app, http_asgi_app

    settings = load_settings()
    if settings.slack_bot_token is None:
        raise UserError("set SLACK_BOT_TOKEN (xoxb-…) in the environment")
    if args.http and settings.slack_signing_secret is None:
        raise UserError("HTTP mode needs SLACK_SIGNING_SECRET in the environment")
    if not args.http and settings.slack_app_token is None:
        raise UserError("Socket Mode needs SLACK_APP_TOKEN (xapp-…) in the environment, or use --http")
    app = create_app(make_conversation(settings), settings, can_probe=cuda_available())
    if args.http:
        import uvicorn

        print(f"ask-oom Slack bot: Events API on http://{args.host}:{args.port}/slack/events")
        uvicorn.run(http_asgi_app(app), host=args.host, port=args.port, log_level="warning")
    else:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        print("ask-oom Slack bot: Socket Mode (Ctrl-C to stop)")
        SocketModeHandler(app, settings.slack_app_token.get_secret_value()).start()
    return 0
