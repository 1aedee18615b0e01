"""Deliver a rendered message to one recipient through apprise (email and every chat channel).

``deliver()`` is a pure send: it never raises, never retries and keeps no state. Idempotency keys
and retries belong to the caller, which has the register's notification rows.

What apprise 2.0.1 does with our message (read from ``apprise/plugins/email/base.py``):

* Email with ``body_format=HTML`` is sent as ``multipart/alternative`` with a ``text/plain`` part
  that apprise *derives from the HTML* (``convert_between(HTML, TEXT, body)``) and the
  ``text/html`` part. apprise has no way to pass our own plain-text rendering, so the
  ``X.txt.j2`` text is not used for email when an ``X.html.j2`` exists; without HTML, the email is
  a single ``text/plain`` part carrying the text.
* Attachments wrap that body in ``multipart/mixed``; each file becomes a ``MIMEApplication`` part
  whose Content-Type is the file's guessed MIME type (``.md`` → ``text/markdown``), base64
  encoded, with ``Content-Disposition: attachment; filename="<name>"``.
* Each ``to=`` address gets its own message; the connection uses Python's SMTP client with
  ``timeout=cto`` (the connect timeout is also the socket timeout for the whole SMTP dialogue).

Chat channels (``wecombot://``, ``dingtalk://``, ``slack://``, ``json://`` …) get the subject as the
title and the plain text as the body; when the message has a markdown part *and* the apprise
plugin declares markdown among its formats (DingTalk, Slack, JSON webhooks), the markdown is sent
instead. Attachments are passed along; plugins without attachment support send the body only.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import apprise
from apprise import NotifyFormat

from ledgerguard.channels.contacts import Recipient
from ledgerguard.channels.messaging import RenderedMessage
from ledgerguard.masking import mask_text

__all__ = ["DeliveryResult", "deliver", "email_url", "mask_address"]

log = logging.getLogger(__name__)

APPRISE_LOGGER = "apprise"


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    channel: str
    address_masked: str
    error: str | None = None
    elapsed_seconds: float = 0.0


# -- URLs ------------------------------------------------------------------------------------

def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return getter() if callable(getter) else str(value)


def email_url(*, to: str, settings: Any = None) -> str:
    """The apprise URL that sends one email to ``to`` through the configured SMTP server.

    ``mailto://`` is plain SMTP; ``mailtos://`` (``smtp_tls``) uses implicit TLS on port 465 and
    STARTTLS on any other port. ``cto``/``rto`` come from ``smtp_timeout_seconds`` so a server that
    never answers fails fast. The URL carries the SMTP password: never log it.
    """
    if settings is None:
        from ledgerguard.config import get_settings

        settings = get_settings()
    host = settings.smtp_host
    host_part = f"[{host}]" if ":" in host and not host.startswith("[") else host
    auth = ""
    user = getattr(settings, "smtp_user", None)
    if user:
        auth = quote(str(user), safe="")
        password = _secret(getattr(settings, "smtp_password", None))
        if password:
            auth += ":" + quote(password, safe="")
        auth += "@"
    scheme = "mailtos" if settings.smtp_tls else "mailto"
    timeout = max(1, int(settings.smtp_timeout_seconds))
    params = [
        ("from", settings.mail_from),
        ("to", to),
        ("smtp", host),
        ("cto", str(timeout)),
        ("rto", str(timeout)),
    ]
    if settings.smtp_tls:
        params.append(("mode", "ssl" if int(settings.smtp_port) == 465 else "starttls"))
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params)
    return f"{scheme}://{auth}{host_part}:{int(settings.smtp_port)}?{query}"


def mask_address(address: str) -> str:
    """A form of an email address or apprise URL that is safe to log and store.

    ``wang.fang@agency.example`` → ``w***@agency.example``; apprise URLs keep the scheme and host
    but lose credentials, tokens, paths and the query: ``json://127.0.0.1:9999/…``, ``wecombot://***``.
    """
    address = (address or "").strip()
    if "://" not in address:
        local, at, domain = address.partition("@")
        if not at:
            return mask_text(address[:1] + "***") if address else ""
        return f"{local[:1]}***@{domain}"
    scheme, _, rest = address.partition("://")
    if scheme.lower() in ("mailto", "mailtos"):
        m = re.search(r"[?&]to=([^&]+)", rest)
        from urllib.parse import unquote

        return f"{scheme}://{mask_address(unquote(m.group(1)))}" if m else f"{scheme}://***"
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    netloc, slash, path = rest.partition("/")
    netloc = netloc.rsplit("@", 1)[-1]
    # Services whose "host" is itself a token (wecombot://KEY, dingtalk://TOKEN, slack://T/B/C)
    # have no dot and no port in it; real hosts do.
    looks_like_host = "." in netloc or ":" in netloc or netloc == "localhost"
    shown = netloc if looks_like_host else "***"
    return f"{scheme}://{shown}" + ("/…" if slash and path else "")


# -- capturing apprise's reasons -------------------------------------------------------------

class _Capture:
    def __init__(self, secrets: list[str]) -> None:
        self.records: list[logging.LogRecord] = []
        self.secrets = secrets  # redacted from records that go on to the application's logs


# The capture of the delivery running in this context. apprise runs each service in its thread
# pool under ``contextvars.copy_context()``, so records logged by its workers still find the
# capture of the deliver() call that started them, even with concurrent deliveries.
_current_capture: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar(
    "ledgerguard_apprise_capture", default=None
)


class _CaptureFilter(logging.Filter):
    """Installed on the ``apprise`` logger while deliveries run (the temporary "handler").

    It copies each record to the capture of the deliver() call that caused it, and lets a record
    continue (to handlers and parent loggers) only if it reaches the level the logger had before
    we lowered it to DEBUG — so apprise's debug output (payloads, service URLs with tokens) is
    seen by us but never written to the application's logs.
    """

    def __init__(self, passthrough_level: int) -> None:
        super().__init__()
        self.passthrough_level = passthrough_level

    def filter(self, record: logging.LogRecord) -> bool:
        cap = _current_capture.get()
        if cap is None:
            return record.levelno >= self.passthrough_level
        cap.records.append(record)
        if record.levelno < self.passthrough_level:
            return False
        # apprise logs some service URLs verbatim (e.g. "Unparseable URL …"): redact before the
        # record reaches any handler. Our capture keeps the original record object, so copy.
        try:
            text = record.getMessage()
        except Exception:
            return True
        redacted = _redact(text, cap.secrets)
        if redacted != text:
            cap.records[-1] = logging.makeLogRecord(dict(record.__dict__))
            record.msg, record.args = redacted, None
        return True


_capture_lock = threading.Lock()
_capture_filter: _CaptureFilter | None = None
_capture_users = 0
_saved_level: int = logging.NOTSET


@contextmanager
def _capture_apprise_logs(secrets: list[str]) -> Iterator[_Capture]:
    global _capture_filter, _capture_users, _saved_level
    logger = logging.getLogger(APPRISE_LOGGER)
    cap = _Capture(secrets)
    with _capture_lock:
        if _capture_filter is None:
            _saved_level = logger.level
            _capture_filter = _CaptureFilter(logger.getEffectiveLevel())
            logger.addFilter(_capture_filter)
            logger.setLevel(logging.DEBUG)
        _capture_users += 1
    token = _current_capture.set(cap)
    try:
        yield cap
    finally:
        _current_capture.reset(token)
        with _capture_lock:
            _capture_users -= 1
            if _capture_users == 0 and _capture_filter is not None:
                logger.removeFilter(_capture_filter)
                logger.setLevel(_saved_level)
                _capture_filter = None


_URL_RE = re.compile(r"\b([a-z][a-z0-9+.\-]*://)([^/\s'\"?]+)[^\s'\")]*", re.IGNORECASE)
_WITH_URL_RE = re.compile(r"(with url: )\S+")


def _redact(text: str, secrets: Sequence[str]) -> str:
    for s in secrets:
        if s and len(s) >= 3:
            text = text.replace(s, "****")
    text = _WITH_URL_RE.sub(r"\1…", text)
    text = _URL_RE.sub(lambda m: m.group(1) + m.group(2).rsplit("@", 1)[-1] + "/…", text)
    text = re.sub(r"(access_token|key|token|secret|password|pass)=[^&\s'\"]+", r"\1=****", text, flags=re.I)
    return mask_text(text)


def _reason(cap: _Capture, result: Any, secrets: Sequence[str]) -> str:
    """Turn what apprise logged during the call into one short sentence."""
    lines: list[str] = []
    for rec in cap.records:
        try:
            msg = rec.getMessage()
        except Exception:
            continue
        if rec.levelno >= logging.WARNING or msg.startswith(("Socket Exception", "Response Details")):
            msg = msg.replace("Socket Exception: ", "").replace("\r\n", " ").strip()
            if msg and msg not in lines:
                lines.append(msg)
    if not lines and result is not None:
        try:
            for entry in result.logs():
                if entry.message not in lines:
                    lines.append(entry.message)
        except Exception:
            pass
    text = "; ".join(lines) or "apprise reported a failure without a reason"
    return _redact(text, secrets)[:1000]


def _supports_markdown(plugin: Any) -> bool:
    formats = getattr(plugin, "notify_format", None)
    if isinstance(formats, (tuple, list, set)):
        return NotifyFormat.MARKDOWN in formats
    return formats == NotifyFormat.MARKDOWN


# -- delivery --------------------------------------------------------------------------------

def deliver(
    *,
    recipient: Recipient,
    message: RenderedMessage,
    attachments: Sequence[Path] = (),
    settings: Any = None,
) -> DeliveryResult:
    """Send ``message`` to ``recipient``; return what happened. Never raises."""
    channel = str(getattr(recipient, "channel", "?"))
    name = getattr(message, "name", "?")
    try:
        masked = mask_address(str(getattr(recipient, "address", "")))
    except Exception:
        masked = "***"
    secrets: list[str] = []
    started = time.monotonic()

    def result(ok: bool, error: str | None = None) -> DeliveryResult:
        res = DeliveryResult(ok=ok, channel=channel, address_masked=masked, error=error,
                             elapsed_seconds=round(time.monotonic() - started, 3))
        if ok:
            log.info("delivered %r via %s to %s", name, channel, masked)
        else:
            log.warning("delivery of %r via %s to %s failed: %s", name, channel, masked, error)
        return res

    try:
        is_email = channel == "email" and "://" not in recipient.address
        if is_email:
            if settings is None:
                from ledgerguard.config import get_settings

                settings = get_settings()
            url = email_url(to=recipient.address, settings=settings)
            password = _secret(getattr(settings, "smtp_password", None))
            if password:
                secrets += [password, quote(password, safe="")]
        else:
            url = recipient.address
        secrets.append(url)

        files = [Path(p) for p in attachments]
        missing = [p.name for p in files if not p.is_file()]
        if missing:
            return result(False, f"attachment not found: {', '.join(missing)}")

        with _capture_apprise_logs(secrets) as cap:
            app = apprise.Apprise()
            if not app.add(url):
                return result(False, f"apprise does not recognise the {channel} address {masked}")
            plugin = app[0]
            if is_email or url.lower().startswith(("mailto://", "mailtos://")):
                if message.html:
                    body, fmt = message.html, NotifyFormat.HTML
                else:
                    body, fmt = message.text, NotifyFormat.TEXT
            elif message.markdown and _supports_markdown(plugin):
                body, fmt = message.markdown, NotifyFormat.MARKDOWN
            else:
                body, fmt = message.text, NotifyFormat.TEXT
            outcome = app.notify(
                body=body,
                title=message.subject,
                body_format=fmt,
                attach=[str(p) for p in files] or None,
            )
            try:
                if outcome:
                    return result(True)
                return result(False, _reason(cap, outcome, secrets))
            finally:
                close = getattr(outcome, "close", None)
                if callable(close):
                    close()
    except Exception as exc:  # deliver() reports, never raises
        return result(False, _redact(f"{type(exc).__name__}: {exc}", secrets))
