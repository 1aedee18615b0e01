"""The local SMTP sink on its own, driven by apprise (the only SMTP client the project uses)."""

from __future__ import annotations

import apprise

from ledgerguard.channels.smtp_sink import ENVELOPE_FROM_HEADER, ENVELOPE_TO_HEADER, SmtpSink


def _send(port: int, to: str, subject: str, body: str, extra: str = "") -> bool:
    url = f"mailto://127.0.0.1:{port}?from=lg%40agency.example&to={to}&smtp=127.0.0.1&cto=3{extra}"
    return bool(apprise.Apprise(url).notify(title=subject, body=body))


def test_free_port_files_and_parsing(tmp_path):
    with SmtpSink(tmp_path / "mail", port=0) as sink:
        assert sink.running and sink.port > 0
        assert _send(sink.port, "a%40agency.example", "第一封", "正文一")
        assert _send(sink.port, "b%40agency.example", "second", "body two", "&bcc=audit%40agency.example")
        messages = sink.wait_for(2)
    assert not sink.running
    paths = sink.paths()
    assert len(paths) == 2
    assert all(p.suffix == ".eml" and p.name.endswith(("-0001.eml", "-0002.eml")) for p in paths)
    assert [m["Subject"] for m in messages] == ["第一封", "second"]
    assert messages[0][ENVELOPE_FROM_HEADER] == "lg@agency.example"
    assert messages[0][ENVELOPE_TO_HEADER] == "a@agency.example"
    # the Bcc is only visible in the envelope
    assert "audit@agency.example" in messages[1][ENVELOPE_TO_HEADER]
    assert "audit" not in (messages[1]["To"] or "")
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "mail").iterdir()) == [p.name for p in paths]


def test_accepts_auth_without_tls(tmp_path):
    with SmtpSink(tmp_path / "mail", port=0) as sink:
        url = (f"mailto://user%40agency.example:pw@127.0.0.1:{sink.port}"
               "?from=lg%40agency.example&to=a%40agency.example&smtp=127.0.0.1&cto=3")
        assert apprise.Apprise(url).notify(title="auth", body="x")
        assert [m["Subject"] for m in sink.messages()] == ["auth"]


def test_restart_and_fixed_port(tmp_path):
    sink = SmtpSink(tmp_path / "mail", port=0).start()
    port = sink.port
    sink.stop()
    sink.stop()  # idempotent
    fixed = SmtpSink(tmp_path / "mail", port=port)
    with fixed:
        assert fixed.port == port
        assert _send(port, "a%40agency.example", "again", "x")
    assert len(fixed.messages()) == 1


def test_messages_on_empty_or_missing_folder(tmp_path):
    assert SmtpSink(tmp_path / "never").messages() == []


def test_messages_parses_each_stored_file_once_and_a_replaced_file_again(tmp_path):
    from ledgerguard.channels.smtp_sink import SmtpSink

    sink = SmtpSink(tmp_path / "mail")   # reading needs no server
    sink.directory.mkdir()
    (sink.directory / "20261203T000000000000Z-0001.eml").write_bytes(b"Subject: one\r\n\r\nbody one\r\n")
    (first,) = sink.messages()
    (sink.directory / "20261203T000000000001Z-0002.eml").write_bytes(b"Subject: two\r\n\r\nbody two\r\n")
    again, second = sink.messages()
    assert again is first and str(second["subject"]) == "two"
    (sink.directory / "20261203T000000000000Z-0001.eml").write_bytes(b"Subject: one, rewritten\r\n\r\nlonger body\r\n")
    assert [str(m["subject"]) for m in sink.messages()] == ["one, rewritten", "two"]
