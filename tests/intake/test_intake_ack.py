"""POST /api/v1/incidents/{id}/ack: a person of contacts.yaml takes an incident over through the API."""

from __future__ import annotations

import json
import socket
import time

import pytest
import yaml
from sqlalchemy import func, select, text

from ledgerguard.intake.auth import sign
from ledgerguard.models import IncidentStatus, Signal
from ledgerguard.register import service as register
from ledgerguard.register.models import Incident, IntakeRequest
from tests.intake.conftest import OPS, OPS_TOKEN, PROM

DESK_TOKEN = "desk-token-0123456789abcdef"
DESK = {"Authorization": f"Bearer {DESK_TOKEN}"}


@pytest.fixture
def people(agency_dir) -> list[str]:
    return [p["id"] for p in yaml.safe_load((agency_dir / "contacts.yaml").read_text(encoding="utf-8"))["people"]]


@pytest.fixture
def ack_client(make_client, agency_dir, monkeypatch):
    """The intake with an `ops` credential (all scopes) and a `desk` one that may only acknowledge.
    No Prefect API: the escalation stop after the commit is skipped (and must not matter)."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    client = make_client(tokens=f"ops:{OPS_TOKEN},desk:{DESK_TOKEN}:ack")
    client.app.state.intake.ensure_ready()
    return client


@pytest.fixture
def db(ack_client):
    from ledgerguard.register.db import session_scope

    engine = ack_client.app.state.intake.engine
    return lambda: session_scope(engine)


@pytest.fixture
def incident_id(db) -> str:
    with db() as s:
        incident, _ = register.open_or_join_incident(
            db_session=s, title="凭证数骤降", signal=Signal(source="test", emergency_type="ledger_loss",
                                                       resource="ledger:C0001"))
        return incident.id


def _ack(client, incident_id: str, body: dict, headers: dict):
    return client.post(f"/api/v1/incidents/{incident_id}/ack", json=body, headers=headers)


def test_api_ack_takes_the_incident_over_once_and_keeps_a_second_on_the_timeline(ack_client, db, incident_id, people):
    first, second = people[0], people[1]
    r = _ack(ack_client, incident_id, {"by": first, "note": "我来处理"}, OPS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["first"] is True and body["incident_id"] == incident_id
    assert body["acknowledged_by"] == first and body["acknowledged_via"] == "api"
    assert body["status"] == "acknowledged" and body["credential"] == "ops"
    assert body["acknowledged_at"] and body["mtta_seconds"] is not None and body["mtta_seconds"] >= 0

    again = _ack(ack_client, incident_id, {"by": second}, DESK)  # the ack-only credential may do this
    assert again.status_code == 200, again.text
    assert again.json()["first"] is False and again.json()["acknowledged_by"] == first

    with db() as s:
        incident = s.get(Incident, incident_id)
        assert incident.status == "acknowledged" and incident.acknowledged_by == first
        assert incident.acknowledged_via == "api" and incident.acknowledged_at is not None
        timeline = register.get_timeline(db_session=s, incident_id=incident_id)
        acked = [e for e in timeline if e.kind == "acknowledged"]
        assert len(acked) == 1 and acked[0].actor == first
        assert acked[0].data["by"] == first and acked[0].data["via"] == "api"
        assert acked[0].data["mtta_seconds"] is not None
        assert "我来处理" in acked[0].message and "intake credential: ops" in acked[0].data["note"]
        again_entry = [e for e in timeline if e.kind == "acknowledged.again"]
        assert len(again_entry) == 1 and again_entry[0].data["by"] == second
        assert "intake credential: desk" in again_entry[0].message
        assert [e.data["to"] for e in timeline if e.kind == "status"] == ["acknowledged"]
        rows = list(s.scalars(select(IntakeRequest).where(IntakeRequest.source == "ack")))
        assert sorted((x.token_id, x.http_status) for x in rows) == [("desk", 200), ("ops", 200)]


def test_hmac_signed_ack_is_accepted_once(ack_client, incident_id, people):
    body = json.dumps({"by": people[0]}).encode()
    header = {"X-LedgerGuard-Signature": sign(body, DESK_TOKEN), "Content-Type": "application/json"}
    r = ack_client.post(f"/api/v1/incidents/{incident_id}/ack", content=body, headers=header)
    assert r.status_code == 200 and r.json()["credential"] == "desk"
    replay = ack_client.post(f"/api/v1/incidents/{incident_id}/ack", content=body, headers=header)
    assert replay.status_code == 401 and replay.json()["reason"] == "replayed_signature"


def test_without_a_credential_401_and_without_the_ack_scope_403(ack_client, db, incident_id, people):
    r = _ack(ack_client, incident_id, {"by": people[0]}, {})
    assert r.status_code == 401 and r.json()["reason"] == "missing_token"
    r = _ack(ack_client, incident_id, {"by": people[0]}, {"Authorization": "Bearer not-a-valid-token-0000"})
    assert r.status_code == 401 and r.json()["reason"] == "invalid_token"
    forbidden = _ack(ack_client, incident_id, {"by": people[0]}, PROM)  # alertmanager + grafana only
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    assert "not ack" in forbidden.json()["errors"][0]["reason"]
    with db() as s:
        incident = s.get(Incident, incident_id)
        assert incident.status == "open" and incident.acknowledged_at is None
        rejected = s.scalar(select(IntakeRequest).where(IntakeRequest.source == "ack"))
        assert rejected.token_id == "prometheus" and rejected.http_status == 403


def test_unknown_incident_404_missing_or_unknown_person_422_resolved_incident_409(ack_client, db, incident_id, people):
    r = _ack(ack_client, "f" * 32, {"by": people[0]}, OPS)
    assert r.status_code == 404 and r.json()["error"] == "incident_not_found" and r.json()["incident_id"] == "f" * 32

    missing = _ack(ack_client, incident_id, {"note": "who?"}, OPS)
    assert missing.status_code == 422 and {e["field"] for e in missing.json()["errors"]} == {"by"}
    blank = _ack(ack_client, incident_id, {"by": "  "}, OPS)
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "by"
    typo = _ack(ack_client, incident_id, {"by": people[0], "nots": "x"}, OPS)
    assert typo.status_code == 422 and typo.json()["errors"][0]["field"] == "nots"
    not_json = ack_client.post(f"/api/v1/incidents/{incident_id}/ack", content=b"{", headers=OPS)
    assert not_json.status_code == 400

    unknown = _ack(ack_client, incident_id, {"by": "nobody.here"}, OPS)
    assert unknown.status_code == 422
    error = unknown.json()["errors"][0]
    assert error["field"] == "by" and "nobody.here" in error["reason"]
    assert all(pid in error["reason"] for pid in people)  # names the known ids
    assert unknown.json()["known_people"] == people

    with db() as s:
        assert s.get(Incident, incident_id).acknowledged_at is None
        register.set_status(db_session=s, incident_id=incident_id, status=IncidentStatus.RESOLVED, actor="test")
    closed = _ack(ack_client, incident_id, {"by": people[0]}, OPS)
    assert closed.status_code == 409 and closed.json()["error"] == "incident_closed"
    assert closed.json()["incident_status"] == "resolved"
    with db() as s:
        incident = s.get(Incident, incident_id)
        assert incident.acknowledged_at is None and incident.status == "resolved"
        kinds = [e.kind for e in register.get_timeline(db_session=s, incident_id=incident_id)]
        assert "acknowledged" not in kinds


def test_register_that_cannot_be_written_answers_503_and_acknowledges_nothing(ack_client, db, incident_id, people):
    with db() as s:
        s.execute(text("DROP TABLE intake_requests"))
    r = _ack(ack_client, incident_id, {"by": people[0]}, OPS)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert r.json()["error"] == "unavailable"
    with db() as s:  # one transaction: the acknowledgement was rolled back with the request row
        assert s.get(Incident, incident_id).acknowledged_at is None
        assert s.scalar(select(func.count()).select_from(Incident).where(Incident.status == "acknowledged")) == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_prefect_neither_blocks_nor_fails_the_acknowledgement(ack_client, db, incident_id, people,
                                                                            monkeypatch):
    from ledgerguard.intake.app import stop_escalation_best_effort

    api = f"http://127.0.0.1:{_closed_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", api)
    started = time.monotonic()
    r = _ack(ack_client, incident_id, {"by": people[0]}, OPS)
    assert r.status_code == 200 and r.json()["first"] is True
    assert time.monotonic() - started < 5
    with db() as s:
        assert s.get(Incident, incident_id).acknowledged_by == people[0]
    outcome = stop_escalation_best_effort(incident_id=incident_id, message="m", api_url=api, timeout_seconds=2)
    assert outcome.stopped is False and "not reachable" in outcome.reason
    assert stop_escalation_best_effort(incident_id=incident_id, message="m", api_url=None).stopped is False
