"""deliver() over real SMTP (aiosmtpd sink) and real HTTP (stdlib server) — no mocks."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from email.message import EmailMessage

import pytest

from ledgerguard.channels.contacts import Recipient
from ledgerguard.channels.messaging import RenderedMessage, render_message
from ledgerguard.channels.service import deliver, email_url, mask_address
from ledgerguard.channels.smtp_sink import ENVELOPE_TO_HEADER
from ledgerguard.config import Settings

ID_NUMBER = "11010519900307123X"
CARD = "6222 0212 3456 7890"
PHONE = "13812345678"


def _context() -> dict:
    return {
        "title": "账套数据库丢失",
        "level": 1,
        "contact_phone": PHONE,
        "note": "<script>alert(1)</script>",
        "observed_at": datetime(2026, 11, 27, 2, 5, tzinfo=timezone.utc),
        "facts": {"id_number": ID_NUMBER, "card": CARD, "amount_cents": 123456},
    }


def _email_to(address: str = "wang.fang@agency.example") -> Recipient:
    return Recipient(person_id="wang.fang", name="王芳", role="manager", channel="email", address=address)


def _parts(msg: EmailMessage) -> dict[str, list]:
    out: dict[str, list] = {"text/plain": [], "text/html": [], "attachments": []}
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            out["attachments"].append(part)
        elif part.get_content_type() in out:
            out[part.get_content_type()].append(part)
    return out


def test_email_with_html_and_markdown_attachment(templates_dir, smtp_sink, sink_settings, tmp_path):
    message = render_message(name="incident", context=_context(), templates_dir=templates_dir)
    attachment = tmp_path / "postmortem-INC-0001.md"
    attachment.write_text(message.markdown or "", encoding="utf-8")

    result = deliver(recipient=_email_to(), message=message, attachments=[attachment], settings=sink_settings)

    assert result.ok, result.error
    assert result.error is None
    assert result.channel == "email"
    assert result.address_masked == "w***@agency.example"

    [eml] = smtp_sink.paths()
    raw = eml.read_bytes()
    assert raw.startswith(b"X-LedgerGuard-Envelope-From: ledgerguard@agency.example")
    # The Chinese subject travels RFC 2047-encoded, never as raw UTF-8 bytes in the header.
    subject_line = next(line for line in raw.splitlines() if line.startswith(b"Subject:"))
    assert subject_line.isascii() and b"=?utf-8?" in subject_line.lower()

    [msg] = smtp_sink.messages()
    assert msg[ENVELOPE_TO_HEADER] == "wang.fang@agency.example"
    assert msg["To"] == "wang.fang@agency.example"
    assert msg["From"] == "ledgerguard@agency.example"
    assert msg["Subject"] == "【一级】账套数据库丢失 — 联系 138****5678"
    assert msg.get_content_type() == "multipart/mixed"

    parts = _parts(msg)
    [html] = parts["text/html"]
    html_body = html.get_content()
    assert "<h1>账套数据库丢失</h1>" in html_body
    assert "110*************3X" in html_body and ID_NUMBER not in html_body
    assert "&lt;script&gt;" in html_body  # autoescaped in .html.j2
    # apprise 2.0.1 adds a text/plain alternative derived from the HTML.
    [text] = parts["text/plain"]
    assert "账套数据库丢失" in text.get_content()
    assert ID_NUMBER not in text.get_content()

    [att] = parts["attachments"]
    assert att.get_filename() == "postmortem-INC-0001.md"
    assert att.get_content_type() == "text/markdown"
    content = att.get_payload(decode=True).decode("utf-8")
    assert content.startswith("# 事后复盘：账套数据库丢失")
    assert "110*************3X" in content


def test_email_text_only_message(templates_dir, smtp_sink, sink_settings):
    message = render_message(name="plain", context={"name": "李娜"}, templates_dir=templates_dir)
    assert message.html is None
    result = deliver(recipient=_email_to("li.na@agency.example"), message=message, settings=sink_settings)
    assert result.ok, result.error
    [msg] = smtp_sink.messages()
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "你好 李娜"
    assert msg["Subject"] == "纯文本通知"


def test_non_ascii_attachment_name_still_arrives(smtp_sink, sink_settings, tmp_path):
    path = tmp_path / "复盘报告.md"
    path.write_text("# 复盘\n", encoding="utf-8")
    message = RenderedMessage(name="x", subject="附件", text="见附件", html="<p>见附件</p>")
    result = deliver(recipient=_email_to(), message=message, attachments=[path], settings=sink_settings)
    assert result.ok, result.error
    [msg] = smtp_sink.messages()
    [att] = _parts(msg)["attachments"]
    assert att.get_filename() == "复盘报告.md"


def test_missing_attachment_is_a_returned_failure(sink_settings, smtp_sink, tmp_path):
    message = RenderedMessage(name="x", subject="s", text="t")
    result = deliver(recipient=_email_to(), message=message, attachments=[tmp_path / "nope.md"], settings=sink_settings)
    assert not result.ok
    assert "nope.md" in (result.error or "")
    assert smtp_sink.paths() == []


def test_smtp_refused_returns_failure_with_reason(tmp_path, free_port):
    settings = Settings(home=tmp_path, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout_seconds=2)
    message = RenderedMessage(name="x", subject="s", text="t", html="<p>t</p>")
    started = time.monotonic()
    result = deliver(recipient=_email_to(), message=message, settings=settings)
    assert time.monotonic() - started < 5
    assert result.ok is False
    assert result.channel == "email"
    assert "refused" in (result.error or "").lower()


def test_hanging_smtp_server_fails_fast(tmp_path, silent_server):
    settings = Settings(home=tmp_path, smtp_host="127.0.0.1", smtp_port=silent_server, smtp_timeout_seconds=1)
    message = RenderedMessage(name="x", subject="s", text="t")
    started = time.monotonic()
    result = deliver(recipient=_email_to(), message=message, settings=settings)
    elapsed = time.monotonic() - started
    assert result.ok is False
    assert elapsed < 6, f"took {elapsed:.1f}s; cto/rto should bound it"
    assert "timed out" in (result.error or "").lower() or "error" in (result.error or "").lower()


def test_json_webhook_receives_title_and_body(http_receiver, templates_dir):
    port = http_receiver.server_address[1]
    message = render_message(name="incident", context=_context(), templates_dir=templates_dir)
    recipient = Recipient("ops", "值班", "duty_lead", "webhook", f"json://127.0.0.1:{port}/hook")
    result = deliver(recipient=recipient, message=message)
    assert result.ok, result.error
    assert result.address_masked == f"json://127.0.0.1:{port}/…"
    [req] = http_receiver.received
    assert req["path"] == "/hook"
    body = req["body"]
    assert body["title"] == message.subject
    # JSON webhooks render markdown, and the message has a markdown part: that is what is sent.
    assert body["message"] == message.markdown
    assert "110*************3X" in body["message"]
    assert ID_NUMBER not in str(body)


def test_json_webhook_gets_plain_text_without_markdown(http_receiver):
    port = http_receiver.server_address[1]
    message = RenderedMessage(name="x", subject="标题", text="正文 13812345678")
    recipient = Recipient("ops", "值班", "duty_lead", "webhook", f"json://127.0.0.1:{port}/hook")
    result = deliver(recipient=recipient, message=message)
    assert result.ok, result.error
    [req] = http_receiver.received
    assert req["body"]["title"] == "标题"
    assert req["body"]["message"] == "正文 13812345678"  # deliver() sends what it is given


def test_json_webhook_http_error_is_reported(http_receiver, free_port):
    port = free_port()
    recipient = Recipient("ops", "值班", "duty_lead", "webhook", f"json://127.0.0.1:{port}/hook")
    result = deliver(recipient=recipient, message=RenderedMessage(name="x", subject="s", text="t"))
    assert result.ok is False
    assert "refused" in (result.error or "").lower()


@pytest.mark.parametrize(
    ("channel", "url", "secret"),
    [
        ("wecom", "wecombot://WECOMSECRETKEY123", "WECOMSECRETKEY123"),
        ("dingtalk", "dingtalk://DINGSECRETTOKEN456", "DINGSECRETTOKEN456"),
        ("slack", "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "TIiajkdnlazkcOXrIdevi7FQ"),
    ],
)
def test_chat_services_unreachable_return_failure(monkeypatch, free_port, channel, url, secret):
    # These plugins post to fixed public hosts. Route HTTPS through a proxy port where nothing
    # listens, so the failure is real, local and immediate whether or not the internet is reachable.
    proxy = f"http://127.0.0.1:{free_port()}"
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    recipient = Recipient("wang.fang", "王芳", "manager", channel, url)
    started = time.monotonic()
    result = deliver(recipient=recipient, message=RenderedMessage(name="x", subject="标题", text="正文", markdown="**正文**"))
    assert time.monotonic() - started < 10
    assert result.ok is False
    assert result.channel == channel
    assert result.error
    assert secret not in result.error
    assert secret not in result.address_masked


def test_unknown_url_scheme_is_a_failure_not_an_exception():
    recipient = Recipient("x", "x", "manager", "webhook", "nosuchscheme://whatever")
    result = deliver(recipient=recipient, message=RenderedMessage(name="x", subject="s", text="t"))
    assert result.ok is False
    assert "does not recognise" in (result.error or "")


def test_deliver_never_raises_on_bad_input():
    recipient = Recipient("x", "x", "manager", "email", "someone@agency.example")
    result = deliver(recipient=recipient, message=None, settings=Settings())  # type: ignore[arg-type]
    assert result.ok is False
    assert result.error


def test_apprise_debug_output_and_secrets_stay_out_of_app_logs(tmp_path, free_port, caplog):
    settings = Settings(home=tmp_path, smtp_port=free_port(), smtp_user="mailer@agency.example",
                        smtp_password="S3cret!pass", smtp_timeout_seconds=2)
    caplog.set_level(logging.DEBUG)
    apprise_logger = logging.getLogger("apprise")
    level_before = apprise_logger.level
    result = deliver(recipient=_email_to(), message=RenderedMessage(name="x", subject="s", text="t"), settings=settings)
    assert result.ok is False
    assert "S3cret" not in (result.error or "")
    assert all("S3cret" not in r.getMessage() for r in caplog.records)
    assert apprise_logger.level == level_before
    assert not any(type(f).__name__ == "_CaptureFilter" for f in apprise_logger.filters)


# -- email_url -----------------------------------------------------------------------------

def test_email_url_plain_and_tls(tmp_path):
    plain = email_url(to="a@agency.example", settings=Settings(home=tmp_path, smtp_host="127.0.0.1", smtp_port=8025,
                                                               smtp_timeout_seconds=4))
    assert plain.startswith("mailto://127.0.0.1:8025?")
    assert "from=ledgerguard%40agency.example" in plain
    assert "to=a%40agency.example" in plain
    assert "smtp=127.0.0.1" in plain
    assert "cto=4" in plain and "rto=4" in plain

    tls = email_url(to="a@agency.example", settings=Settings(
        home=tmp_path, smtp_host="smtp.exmail.qq.com", smtp_port=465, smtp_tls=True,
        smtp_user="bot@agency.example", smtp_password="p@ss/w:rd&x"))
    assert tls.startswith("mailtos://bot%40agency.example:p%40ss%2Fw%3Ard%26x@smtp.exmail.qq.com:465?")
    assert "mode=ssl" in tls

    starttls = email_url(to="a@agency.example", settings=Settings(home=tmp_path, smtp_host="smtp.example.com",
                                                                  smtp_port=587, smtp_tls=True))
    assert "mode=starttls" in starttls


def test_email_url_round_trips_through_apprise(tmp_path):
    import apprise

    settings = Settings(home=tmp_path, smtp_host="smtp.example.com", smtp_port=587, smtp_tls=True,
                        smtp_user="bot@agency.example", smtp_password="p@ss/w:rd&x", smtp_timeout_seconds=7)
    plugin = apprise.Apprise.instantiate(email_url(to="a@agency.example", settings=settings))
    assert plugin is not None
    assert plugin.user == "bot@agency.example"
    assert plugin.password == "p@ss/w:rd&x"
    assert plugin.smtp_host == "smtp.example.com"
    assert plugin.port == 587
    assert plugin.secure_mode == "starttls"
    assert plugin.socket_connect_timeout == 7
    assert [t[1] for t in plugin.targets] == ["a@agency.example"]


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("wang.fang@agency.example", "w***@agency.example"),
        ("wecombot://KEY123", "wecombot://***"),
        ("dingtalk://TOKEN", "dingtalk://***"),
        ("slack://T1/B2/C3", "slack://***/…"),
        ("json://127.0.0.1:9999/hook", "json://127.0.0.1:9999/…"),
        ("json://user:pw@hooks.agency.example/x?token=1", "json://hooks.agency.example/…"),
        ("mailto://u:p@smtp.x?to=li.na%40agency.example", "mailto://l***@agency.example"),
    ],
)
def test_mask_address(address, masked):
    assert mask_address(address) == masked


def test_concurrent_deliveries_keep_their_own_reasons(tmp_path, free_port, http_receiver, smtp_sink, sink_settings):
    """Prefect runs tasks in threads: each deliver() must report its own outcome and reason."""
    from concurrent.futures import ThreadPoolExecutor

    refused_settings = Settings(home=tmp_path, smtp_port=free_port(), smtp_timeout_seconds=2)
    good_hook = f"json://127.0.0.1:{http_receiver.server_address[1]}/hook"
    bad_hook = f"json://127.0.0.1:{free_port()}/dead"
    msg = RenderedMessage(name="x", subject="s", text="t")
    jobs = [
        ("smtp-refused", _email_to(), refused_settings),
        ("smtp-ok", _email_to(), sink_settings),
        ("hook-ok", Recipient("o", "o", "r", "webhook", good_hook), None),
        ("hook-refused", Recipient("o", "o", "r", "webhook", bad_hook), None),
    ] * 3
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda j: (j[0], deliver(recipient=j[1], message=msg, settings=j[2])), jobs))
    for label, res in results:
        if label.endswith("ok"):
            assert res.ok and res.error is None, (label, res)
        else:
            assert not res.ok, (label, res)
            assert "refused" in res.error.lower(), (label, res)
            if label == "smtp-refused":
                assert "email" in res.error and "JSON" not in res.error, res.error
            else:
                assert "JSON" in res.error and "email" not in res.error, res.error
    assert len(smtp_sink.paths()) == 3
    assert len(http_receiver.received) == 3
    assert not any(type(f).__name__ == "_CaptureFilter" for f in logging.getLogger("apprise").filters)
