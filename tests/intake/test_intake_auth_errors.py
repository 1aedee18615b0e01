"""Authentication, validation, size limit, and a register that cannot be written."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from sqlalchemy import func, select, text

from ledgerguard.intake.auth import sign
from ledgerguard.register.models import IntakeRequest, OutboxItem, SignalRecord
from tests.intake.conftest import PROM, PROM_TOKEN


def _nothing_written(db, *, requests: int = 0) -> None:
    with db() as s:
        assert s.scalar(select(func.count()).select_from(SignalRecord)) == 0
        assert s.scalar(select(func.count()).select_from(OutboxItem)) == 0
        assert s.scalar(select(func.count()).select_from(IntakeRequest)) == requests


def test_unauthenticated_requests_get_401_and_nothing_is_written(client, db, am_payload):
    r = client.post("/api/v1/alertmanager", json=am_payload)
    assert r.status_code == 401 and r.json()["reason"] == "missing_token"
    assert "Bearer" in r.headers["WWW-Authenticate"]
    r = client.post("/api/v1/alertmanager", json=am_payload, headers={"Authorization": "Bearer wrong-token-123456"})
    assert r.status_code == 401 and r.json()["reason"] == "invalid_token"
    r = client.post("/api/v1/alertmanager", json=am_payload, headers={"Authorization": f"Basic {PROM_TOKEN}"})
    assert r.status_code == 401
    _nothing_written(db)


def test_hmac_signature_accepted_then_bad_expired_and_replayed_refused(client, db, am_payload):
    body = json.dumps(am_payload).encode()
    header = {"X-LedgerGuard-Signature": sign(body, PROM_TOKEN), "Content-Type": "application/json"}
    r = client.post("/api/v1/alertmanager", content=body, headers=header)
    assert r.status_code == 202, r.text

    replay = client.post("/api/v1/alertmanager", content=body, headers=header)
    assert replay.status_code == 401 and replay.json()["reason"] == "replayed_signature"

    tampered = client.post("/api/v1/alertmanager", content=body.replace(b"C0001", b"C0002"), headers=header)
    assert tampered.status_code == 401 and tampered.json()["reason"] == "bad_signature"

    old = sign(body, PROM_TOKEN, timestamp=int(time.time()) - 301)
    expired = client.post("/api/v1/alertmanager", content=body, headers={"X-LedgerGuard-Signature": old})
    assert expired.status_code == 401 and expired.json()["reason"] == "expired_timestamp"

    wrong_key = client.post("/api/v1/alertmanager", content=body,
                            headers={"X-LedgerGuard-Signature": sign(body, "some-other-secret-0123")})
    assert wrong_key.status_code == 401 and wrong_key.json()["reason"] == "bad_signature"
    garbage = client.post("/api/v1/alertmanager", content=body, headers={"X-LedgerGuard-Signature": "v1=abc"})
    assert garbage.status_code == 401 and garbage.json()["reason"] == "bad_signature"
    with db() as s:
        assert s.scalar(select(func.count()).select_from(IntakeRequest)) == 1
        assert s.scalar(select(func.count()).select_from(SignalRecord)) == 2


def test_malformed_json_and_missing_fields_name_the_field_and_write_no_signal(client, db, am_payload):
    r = client.post("/api/v1/alertmanager", content=b'{"version": "4", ', headers=PROM)
    assert r.status_code == 400 and r.json()["error"] == "malformed"
    assert r.json()["errors"][0]["field"] == "(body)" and "line 1" in r.json()["errors"][0]["reason"]

    del am_payload["alerts"][1]["labels"]
    am_payload["alerts"][0]["status"] = "burning"
    r = client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    assert r.status_code == 422
    errors = {e["field"]: e["reason"] for e in r.json()["errors"]}
    assert set(errors) == {"alerts.0.status", "alerts.1.labels"}
    assert errors["alerts.1.labels"] == "Field required"

    r = client.post("/api/v1/alertmanager", json={**am_payload, "version": "3"}, headers=PROM)
    assert r.status_code == 422 and "version" in {e["field"] for e in r.json()["errors"]}
    _nothing_written(db, requests=3)  # the rejected requests are kept, with their reasons
    with db() as s:
        rows = list(s.scalars(select(IntakeRequest).order_by(IntakeRequest.received_at)))
        assert [(x.status, x.http_status) for x in rows] == [("rejected", 400), ("rejected", 422), ("rejected", 422)]
        assert "alerts.1.labels" in rows[1].error


def test_body_over_the_limit_is_413(make_client, db, am_payload):
    client = make_client(max_body_bytes=2048)
    am_payload["alerts"][0]["annotations"]["description"] = "x" * 4096
    r = client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    assert r.status_code == 413 and r.json()["limit_bytes"] == 2048
    r = client.post("/v2/enqueue", json={"routing_key": "x" * 4096})
    assert r.status_code == 413


def test_register_that_cannot_be_written_answers_503_never_202(client, db, am_payload):
    assert client.post("/api/v1/alertmanager", json=am_payload, headers=PROM).status_code == 202
    with db() as s:
        s.execute(text("DROP TABLE outbox"))
    r = client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert r.json()["error"] == "unavailable" and "outbox" in r.json()["detail"]
    pd = client.post("/v2/enqueue", json={"routing_key": "R0UTINGKEY0123456789abcdefABCDEF",
                                          "event_action": "trigger", "dedup_key": "k",
                                          "payload": {"summary": "s", "source": "h", "severity": "info",
                                                      "custom_details": {"alertname": "BackupJobFailed"}}})
    assert pd.status_code == 503 and pd.headers["Retry-After"]
    with db() as s:  # the failed requests left nothing behind: one transaction, rolled back
        assert s.scalar(select(func.count()).select_from(IntakeRequest)) == 1
        assert s.scalar(select(func.count()).select_from(SignalRecord)) == 2
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["register"]["reachable"] is True


def test_unreachable_register_answers_503(make_client, tmp_path, am_payload):
    from sqlalchemy import create_engine

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    engine = create_engine(f"sqlite:///{blocker}/register.sqlite")
    client = make_client(engine=engine)
    r = client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert client.get("/healthz").json()["register"]["reachable"] is False


def test_healthz_reports_the_register_and_the_outbox(client, am_payload):
    client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    from ledgerguard.register.db import head_revision

    assert body["status"] == "ok" and body["register"]["revision"] == head_revision()
    assert body["register"]["outbox"]["pending"] == 2 and body["credentials"] == 3


def test_credentials_file_is_reloaded_when_it_changes(client, credentials_file, am_payload):
    new_token = "rotated-token-0123456789"
    credentials_file.write_text(
        f"credentials:\n  - name: prometheus\n    token: {new_token}\n    sources: [alertmanager]\n",
        encoding="utf-8")
    import os

    st = credentials_file.stat()
    os.utime(credentials_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert client.post("/api/v1/alertmanager", json=am_payload, headers=PROM).status_code == 401
    ok = client.post("/api/v1/alertmanager", json=am_payload, headers={"Authorization": f"Bearer {new_token}"})
    assert ok.status_code == 202


def test_intake_and_signals_modules_never_import_prefect():
    code = ("import sys; import ledgerguard.intake.app, ledgerguard.signals, ledgerguard.register.service; "
            "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_healthz_is_ready_on_a_fresh_register_before_any_alert(client):
    # Regression: a new register answered 503 "no such table: outbox" until the first alert,
    # so a readiness probe would never have let traffic through.
    r = client.get("/healthz")
    assert r.status_code == 200, r.json()
    assert r.json()["register"]["outbox"]["pending"] == 0


def test_healthz_answers_while_another_process_holds_the_register_write_lock(make_client, lg_home):
    # Regression: the probe ran the migrations (a write transaction) on every first call, so a
    # long write by the served flows made a freshly started intake answer 503 for its timeout.
    import sqlite3

    from ledgerguard.config import get_settings
    from ledgerguard.register.db import upgrade

    upgrade(get_settings().register)   # at head, as the stack leaves it
    client = make_client(db_timeout_seconds=0.5)
    path = get_settings().register.split("///", 1)[1]
    writer = sqlite3.connect(path, isolation_level=None, timeout=1)
    writer.execute("BEGIN IMMEDIATE")
    try:
        r = client.get("/healthz")
        assert r.status_code == 200, r.json()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
