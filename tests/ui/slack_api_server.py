"""A local Slack Web API server for tests: speaks the real HTTP protocol (form or JSON POSTs to /api/<method>,
`{"ok": true, ...}` replies), records every call, serves files for url_private downloads and accepts
the external-upload flow of files_upload_v2 (getUploadURLExternal → POST bytes → completeUploadExternal)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class SlackAPIServer:
    def __init__(self, bot_user_id: str = "UBOT"):
        self.calls: list[tuple[str, dict]] = []
        self.uploads: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.auth_headers: list[str] = []
        self.bot_user_id = bot_user_id
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, payload: dict, status: int = 200):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/files/"):
                    name = self.path.split("/files/", 1)[1]
                    with server._lock:
                        server.auth_headers.append(self.headers.get("Authorization", ""))
                    data = server.files.get(name)
                    if data is None:
                        self.send_response(404)
                        self.end_headers()
                        return
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self._reply({"ok": False, "error": "unknown_method"}, 404)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.startswith("/upload/"):
                    with server._lock:
                        server.uploads[self.path.split("/upload/", 1)[1]] = raw
                    self.send_response(200)
                    self.end_headers()
                    return
                method = self.path.split("/api/", 1)[-1].split("?")[0]
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype:
                    args = json.loads(raw or b"{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                with server._lock:
                    server.calls.append((method, args))
                self._reply(server.answer(method, args))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.api_url = self.base_url + "api/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, method: str, args: dict) -> dict:
        if method == "auth.test":
            return {"ok": True, "user_id": self.bot_user_id, "bot_id": "BBOT", "team_id": "T1", "user": "ask-oom"}
        if method == "chat.postMessage":
            return {"ok": True, "channel": args.get("channel"), "ts": f"{time.time():.6f}", "message": {"text": args.get("text")}}
        if method == "files.getUploadURLExternal":
            file_id = f"F{len(self.calls)}"
            return {"ok": True, "upload_url": f"{self.base_url}upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = args.get("files")
            files = json.loads(files) if isinstance(files, str) else files
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title", "")} for f in files]}
        if method == "files.info":
            return {"ok": True, "file": {"id": args.get("file"), "name": "f"}}
        return {"ok": True}

    def start(self) -> "SlackAPIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posted(self, method: str = "chat.postMessage") -> list[dict]:
        with self._lock:
            return [a for m, a in self.calls if m == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 60.0) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.posted(method)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise TimeoutError(f"{method}: expected {count} call(s), got {len(self.posted(method))}")
