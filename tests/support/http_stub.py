"""A real local HTTP server for probe tests: it answers GET/HEAD/POST with the next mode of
``script`` — an HTTP status, or ``"sleep"`` to answer 200 only after ``sleep_s`` (a time-out for
a short probe) — the last mode repeats; set ``status`` to switch it by hand. Optionally a JSON body."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable


class HttpStub:
    def __init__(self, script: Iterable[int | str] = (200,), json_body: Any = None, sleep_s: float = 1.5):
        from ledgerguard.embedded import free_port

        self.script, self.hits, self.json_body, self.sleep_s = list(script), 0, json_body, sleep_s
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                status = outer.script[min(outer.hits, len(outer.script) - 1)]
                outer.hits += 1
                if status == "sleep":
                    time.sleep(outer.sleep_s)
                    status = 200
                body = json.dumps(outer.json_body).encode() if outer.json_body is not None else b"ok"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _answer

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True

    @property
    def status(self) -> int:
        return self.script[-1]

    @status.setter
    def status(self, value: int) -> None:
        self.script = [value]
        self.hits = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "HttpStub":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
