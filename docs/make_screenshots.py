"""Regenerate the README's CLI and Slack pictures from real output (the web UI's come from
`ASK_OOM_SCREENSHOTS=1 pytest tests/ui/test_web.py`). Needs Debian's chromium.

    python docs/make_screenshots.py
"""

from __future__ import annotations

import html
import json
import subprocess
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

from ask_oom.assistant.agent import diagnose
from ask_oom.assistant.diagnosis import DiagnoseRequest
from ask_oom.assistant.render import render_markdown
from ask_oom.assistant.render_slack import render_slack

DOCS = Path(__file__).resolve().parent
EXAMPLES = DOCS.parent / "ui" / "examples"
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def shoot(page: Path, out: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={width},{height}",
                        page.as_uri()], check=True, capture_output=True, timeout=120)


def main() -> None:
    request = DiagnoseRequest(log_text=(EXAMPLES / "moe-llava-phi2.log").read_text(),
                              config_text=(EXAMPLES / "moe-llava-phi2.sh").read_text(), config_name="moe-llava-phi2.sh")
    d = diagnose(request)
    console = Console(record=True, width=110, force_terminal=True)
    md = render_markdown(d)
    console.print(Markdown(md.split("## Memory per GPU")[0]))
    with tempfile.TemporaryDirectory() as tmp:
        svg = Path(tmp) / "cli.svg"
        svg.write_text(console.export_svg(title="ask-oom < moe-llava-phi2.log"))
        shoot(svg, DOCS / "cli-diagnosis.png", 1400, 1250)
        message = render_slack(d, markdown=md)
        blocks = []
        for b in message.blocks:
            if b["type"] == "section":
                text = html.escape(b["text"]["text"])
                blocks.append(f"<div class='sec'>{_mrkdwn(text)}</div>")
            elif b["type"] == "actions":
                blocks.append("<div class='act'>" + "".join(f"<span class='btn {e.get('style', '')}'>{html.escape(e['text']['text'])}</span>"
                                                              for e in b["elements"]) + "</div>")
        files = "".join(f"<div class='file'>📄 {html.escape(f.filename)}</div>" for f in message.files)
        page = Path(tmp) / "slack.html"
        page.write_text(SLACK_PAGE.format(body="".join(blocks) + files), encoding="utf-8")
        shoot(page, DOCS / "slack-reply.png", 900, 760)
    print(json.dumps({"wrote": ["docs/cli-diagnosis.png", "docs/slack-reply.png"]}))


def _mrkdwn(text: str) -> str:
    import re

    text = re.sub(r"```(.*?)```", r"<pre>\1</pre>", text, flags=re.S)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*([^*\n]+)\*", r"<b>\1</b>", text)
    text = re.sub(r"&lt;(https?://[^|]+)\|([^&]+)&gt;", r"<a href='\1'>\2</a>", text)
    return text.replace("\n", "<br>")


SLACK_PAGE = """<!doctype html><meta charset="utf-8"><style>
body{{font:15px/1.46 -apple-system,'Segoe UI',Lato,sans-serif;margin:0;background:#fff;color:#1d1c1d}}
.thread{{padding:18px 22px}} .who{{font-weight:700}} .who span{{font-weight:400;color:#616061;font-size:12px;margin-left:6px}}
.sec{{margin:4px 0 8px}} code{{background:#f6f6f6;border:1px solid #ddd;border-radius:3px;padding:0 3px;color:#e01e5a;font-size:12px}}
pre{{background:#f8f8f8;border:1px solid #ddd;border-radius:4px;padding:8px;font-size:12px;white-space:pre-wrap}}
.act{{margin-top:10px}} .btn{{display:inline-block;border:1px solid #ccc;border-radius:4px;padding:3px 12px;margin-right:8px;font-weight:700;font-size:13px}}
.btn.primary{{background:#007a5a;color:#fff;border-color:#007a5a}} .file{{margin-top:8px;border:1px solid #ddd;border-radius:6px;padding:8px;width:320px}}
</style><div class="thread"><div class="who">ask-oom <span>APP · in thread</span></div>{body}</div>"""


if __name__ == "__main__":
    main()
