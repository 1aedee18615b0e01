"""A local SMTP sink: every message it receives lands as an ``.eml`` file in a folder.

Used by the embedded set-up (mail goes to ``<home>/mail/``) and by the tests. Built on aiosmtpd's
threaded ``Controller``; it accepts any sender, any recipient, and any AUTH credentials (so
settings that carry an SMTP user still work against it), and never relays anything.

File format: ``<directory>/<UTC timestamp>-<n>.eml``, e.g. ``20261127T021000123456Z-0001.eml``,
holding the message bytes exactly as received, preceded by two header lines the sink adds::

    X-LedgerGuard-Envelope-From: ledgerguard@agency.example
    X-LedgerGuard-Envelope-To: wang.fang@agency.example, li.na@agency.example

(the SMTP envelope, which may differ from the To/Cc headers, e.g. for Bcc). A file is written to
a temporary name and renamed, so a reader never sees half a message; names sort in arrival order.
"""

from __future__ import annotations

import email.policy
import itertools
import logging
import signal
import threading
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

__all__ = ["ENVELOPE_FROM_HEADER", "ENVELOPE_TO_HEADER", "SmtpSink", "run_sink_forever"]

log = logging.getLogger(__name__)

ENVELOPE_FROM_HEADER = "X-LedgerGuard-Envelope-From"
ENVELOPE_TO_HEADER = "X-LedgerGuard-Envelope-To"


def _accept_any(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    return AuthResult(success=True)


class _EmlWriter:
    """aiosmtpd handler: write each message to a file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or (
            envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode("utf-8")
        )
        newline = b"\r\n" if b"\r\n" in raw[:2000] else b"\n"
        mail_from = (envelope.mail_from or "").encode("utf-8", "replace")
        rcpt = ", ".join(envelope.rcpt_tos).encode("utf-8", "replace")
        head = (
            ENVELOPE_FROM_HEADER.encode() + b": " + mail_from + newline
            + ENVELOPE_TO_HEADER.encode() + b": " + rcpt + newline
        )
        with self._lock:
            n = next(self._counter)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            name = f"{stamp}-{n:04d}.eml"
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(head + raw)
        tmp.replace(self.directory / name)
        log.info("smtp sink stored %s (%d bytes, %d recipient(s))", name, len(raw), len(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """A Controller that learns the real port when asked to bind port 0."""

    def _trigger_server(self) -> None:
        if not self.port and self.server is not None and self.server.sockets:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpSink:
    """Local SMTP server writing every received message to ``directory`` as ``.eml``.

    ``port=0`` picks a free port; read the real one from ``.port`` after :meth:`start`. With port 0
    give an IP address as ``host`` (a name like ``localhost`` may bind several sockets).
    """

    def __init__(self, directory: Path | str, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.directory = Path(directory)
        self.host = host
        self._requested_port = port
        self.port = port
        self._controller: _Controller | None = None
        # Stored files are written once (renamed into place): a file is parsed once, not on
        # every poll of a test or a demo waiting for mail.
        self._parsed: dict[Path, tuple[tuple[int, int], EmailMessage]] = {}
        self._parsed_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "SmtpSink":
        if self._controller is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        controller = _Controller(
            _EmlWriter(self.directory),
            hostname=self.host,
            port=self._requested_port,
            authenticator=_accept_any,
            auth_require_tls=False,
            enable_SMTPUTF8=True,
            data_size_limit=50 * 1024 * 1024,
        )
        controller.start()
        self._controller = controller
        self.port = controller.port
        log.info("smtp sink listening on %s:%d, writing to %s", self.host, self.port, self.directory)
        return self

    def stop(self) -> None:
        if self._controller is not None:
            try:
                self._controller.stop()
            finally:
                self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> "SmtpSink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading -----------------------------------------------------------------------------
    def paths(self) -> list[Path]:
        """The stored ``.eml`` files, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.eml"))

    def messages(self) -> list[EmailMessage]:
        """Every stored message, parsed with the modern ``email.policy.default``, oldest first."""
        parser = BytesParser(policy=email.policy.default)
        out: list[EmailMessage] = []
        for path in self.paths():
            try:
                stat = path.stat()
            except FileNotFoundError:   # removed since it was listed
                continue
            stamp = (stat.st_size, stat.st_mtime_ns)
            with self._parsed_lock:
                known = self._parsed.get(path)
            if known is None or known[0] != stamp:
                with path.open("rb") as fh:
                    known = (stamp, parser.parse(fh))  # type: ignore[arg-type]
                with self._parsed_lock:
                    self._parsed[path] = known
            out.append(known[1])
        return out

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        """Wait until at least ``count`` messages are stored (or ``timeout`` passes); return them."""
        deadline = time.monotonic() + timeout
        while len(self.paths()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages()


def run_sink_forever(directory: Path | str, host: str = "127.0.0.1", port: int = 8025) -> None:
    """Run a sink in the foreground until Ctrl-C or SIGTERM (for a CLI command)."""
    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _stop)
    sink = SmtpSink(directory, host=host, port=port).start()
    print(f"SMTP sink on {sink.host}:{sink.port}, writing .eml files to {sink.directory}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
