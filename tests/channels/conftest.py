"""Fixtures for the channel tests: a template folder, a real SMTP sink, a real HTTP receiver."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ledgerguard.channels.smtp_sink import SmtpSink
from ledgerguard.config import Settings

TEMPLATES = {
    "zh-CN/incident.subject.j2": "【{{ level | level_label }}】{{ title }} — 联系 {{ contact_phone }}\n",
    "zh-CN/incident.txt.j2": (
        "事件：{{ title }}\n"
        "客户证件号：{{ facts.id_number }}\n"
        "扣款卡号：{{ facts.card }}\n"
        "金额：{{ facts.amount_cents | money }}\n"
        "发现时间：{{ observed_at | dt }}\n"
    ),
    "zh-CN/incident.html.j2": (
        "<html><body><h1>{{ title }}</h1>"
        "<p>客户证件号：<b>{{ facts.id_number }}</b></p>"
        "<p>扣款卡号：{{ facts.card }}</p>"
        "<p>联系：{{ contact_phone }}</p>"
        "<p>备注：{{ note }}</p>"
        "</body></html>\n"
    ),
    "zh-CN/incident.md.j2": "# 事后复盘：{{ title }}\n\n- 级别：{{ level | level_label }}\n- 证件号：{{ facts.id_number }}\n",
    "en/incident.subject.j2": "[{{ level | level_label }}] {{ title }}\n",
    "en/incident.txt.j2": "Incident: {{ title }}\nAmount: {{ facts.amount_cents | money }}\n",
    # no en/incident.html.j2 or .md.j2: they fall back to zh-CN
    "zh-CN/plain.subject.j2": "纯文本通知\n",
    "zh-CN/plain.txt.j2": "你好 {{ name }}\n",
}


@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    for rel, text in TEMPLATES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def smtp_sink(tmp_path: Path):
    with SmtpSink(tmp_path / "mail", host="127.0.0.1", port=0) as sink:
        yield sink


@pytest.fixture
def sink_settings(smtp_sink: SmtpSink, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.port,
        smtp_timeout_seconds=3,
        mail_from="ledgerguard@agency.example",
    )


def _free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """Call it to get a local port where nothing listens."""
    return _free_port


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self.server.received.append(  # type: ignore[attr-defined]
            {"path": self.path, "headers": dict(self.headers), "body": json.loads(raw or b"{}")}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never says a word (a hanging SMTP server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conns.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for c in conns:
            c.close()
        srv.close()
