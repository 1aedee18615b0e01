"""PagerDuty Events API v2 (PagerDuty's paths and answers) and the generic signal."""

from __future__ import annotations

from sqlalchemy import func, select

from ledgerguard.models import Signal
from ledgerguard.register import service
from ledgerguard.register.models import Incident, IntakeRequest, SignalRecord
from tests.intake.conftest import OPS, PD_KEY, PROM


def _trigger(**kw) -> dict:
    event = {"routing_key": PD_KEY, "event_action": "trigger",
             "payload": {"summary": "夜间备份失败 nas01", "source": "nas01", "severity": "critical",
                         "timestamp": "2025-03-03T02:10:00.000+0800", "component": "rsync", "group": "backup",
                         "class": "backup", "custom_details": {"alertname": "BackupJobFailed",
                                                                "backup_target": "nightly", "exit_code": 23}},
             "images": [], "links": [{"href": "http://nas01/log", "text": "log"}]}
    event.update(kw)
    return event


def test_pagerduty_trigger_acknowledge_resolve_round_trip(client, db):
    r = client.post("/v2/enqueue", json=_trigger(dedup_key="nas01-nightly"))
    assert r.status_code == 202
    assert r.json() == {"status": "success", "message": "Event processed", "dedup_key": "nas01-nightly"}
    with db() as s:
        rec = s.scalars(select(SignalRecord)).one()
        assert (rec.emergency_type, rec.resource, rec.dedup_key) == ("backup_failure", "backups:nightly",
                                                                      "nas01-nightly")
        [item] = service.list_outbox(db_session=s)
        assert item.payload["resource"]["prefect.resource.id"] == "ledgerguard.signal.backup_failure.nas01-nightly"
        assert item.payload["payload"]["request"]["requested_by"] == "pd-bridge"
        incident, _ = service.open_or_join_incident(  # the flow run
            db_session=s, title="备份失败", signal=Signal(source="pagerduty", emergency_type="backup_failure",
                                                      resource="backups:nightly", dedup_key="nas01-nightly"))
        incident_id = incident.id

    ack = client.post("/v2/enqueue", json={"routing_key": PD_KEY, "event_action": "acknowledge",
                                           "dedup_key": "nas01-nightly"})
    assert ack.status_code == 202 and ack.json()["dedup_key"] == "nas01-nightly"
    with db() as s:
        incident = s.get(Incident, incident_id)
        assert incident.status == "acknowledged" and incident.acknowledged_at is not None
        assert service.get_timeline(db_session=s, incident_id=incident_id)[-1].actor == "pd-bridge"
        assert len(service.list_outbox(db_session=s)) == 1  # an acknowledgement makes no event

    res = client.post("/v2/enqueue", json={"routing_key": PD_KEY, "event_action": "resolve",
                                           "dedup_key": "nas01-nightly"})
    assert res.status_code == 202 and res.json()["message"] == "Event processed"
    with db() as s:
        assert s.get(Incident, incident_id).status == "resolved"
        events = [i.payload["event"] for i in service.list_outbox(db_session=s)]
        assert events == ["ledgerguard.signal.firing", "ledgerguard.signal.resolved"]


def test_pagerduty_trigger_without_dedup_key_gets_one(client, db):
    r = client.post("/v2/enqueue", json=_trigger())
    assert r.status_code == 202
    key = r.json()["dedup_key"]
    assert len(key) == 32
    with db() as s:
        assert s.scalars(select(SignalRecord)).one().dedup_key == key


def test_pagerduty_invalid_events_answer_in_pagerdutys_shape(client, db):
    r = client.post("/v2/enqueue", json={"event_action": "trigger", "payload": {}})
    assert r.status_code == 400
    assert r.json() == {"status": "invalid event", "message": "Event object is invalid",
                        "errors": ["'routing_key' is missing or blank"]}
    bad = _trigger()
    del bad["payload"]["severity"]
    r = client.post("/v2/enqueue", json=bad)
    assert r.status_code == 400 and r.json()["status"] == "invalid event"
    assert r.json()["errors"] == ["'payload.severity' is missing or blank"]
    r = client.post("/v2/enqueue", json={"routing_key": PD_KEY, "event_action": "resolve"})
    assert r.status_code == 400 and "'dedup_key'" in r.json()["errors"][0]
    r = client.post("/v2/enqueue", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["status"] == "invalid event"
    r = client.post("/v2/enqueue", json=_trigger(routing_key="R" * 32))
    assert r.status_code == 401
    with db() as s:
        assert s.scalar(select(func.count()).select_from(SignalRecord)) == 0
        assert service.list_outbox(db_session=s) == []
        rejected = list(s.scalars(select(IntakeRequest)))  # the authenticated, invalid ones
        assert [(x.status, x.http_status) for x in rejected] == [("rejected", 400), ("rejected", 400)]


def test_pagerduty_routing_key_of_another_source_is_forbidden(client):
    r = client.post("/v2/enqueue", json=_trigger(routing_key="prom-token-0123456789abcdef"))
    assert r.status_code == 403


def test_pagerduty_change_event_is_recorded_as_a_change(client, db):
    change = {"routing_key": PD_KEY, "payload": {"summary": "升级财务软件到 5.2", "timestamp": "2025-03-03T01:00:00Z",
                                                 "source": "deploy-bot", "custom_details": {"version": "5.2"}},
              "links": [{"href": "http://ci/42", "text": "build 42"}]}
    r = client.post("/v2/change/enqueue", json=change)
    assert r.status_code == 202
    assert r.json() == {"status": "success", "message": "Change event processed"}
    with db() as s:
        rec = s.scalars(select(SignalRecord)).one()
        assert rec.action == "change" and rec.emergency_type == "change" and rec.resource == "change:deploy-bot"
        [item] = service.list_outbox(db_session=s)
        assert item.payload["event"] == "ledgerguard.signal.change" and item.payload["payload"]["request"] is None
        assert s.scalar(select(func.count()).select_from(Incident)) == 0


def test_generic_signal_and_reading_it_back(client, db):
    signal = {"emergency_type": "ledger_loss", "resource": "ledger:C0003", "summary": "手工上报：凭证丢失",
              "labels": {"reporter": "zhang.san"}, "observed_at": "2025-03-03T09:00:00+08:00", "drill": True}
    r = client.post("/api/v1/signals", json=signal, headers=OPS)
    assert r.status_code == 202, r.text
    [sig] = r.json()["signals"]
    assert sig["dedup_key"] == "ledger_loss:ledger:C0003" and sig["status"] == "queued"
    got = client.get(f"/api/v1/signals/{sig['id']}", headers=OPS)
    assert got.status_code == 200
    body = got.json()
    assert body["drill"] is True and body["summary"] == "手工上报：凭证丢失" and body["payload"]["requested_by"] == "ops"
    assert body["events"][0]["event"] == "ledgerguard.signal.firing" and body["events"][0]["status"] == "pending"
    assert client.get(f"/api/v1/signals/{sig['id']}").status_code == 401
    assert client.get("/api/v1/signals/nope", headers=OPS).status_code == 404
    with db() as s:
        [item] = service.list_outbox(db_session=s)
        assert item.payload["payload"]["request"]["drill"] is True
        assert item.payload["resource"]["ledgerguard.drill"] == "true"


def test_generic_explicit_dedup_key_and_resolve(client, db):
    body = {"emergency_type": "ransomware", "resource": "fileserver:finance", "dedup_key": "rw-2025-03-03",
            "summary": "canary touched", "status": "firing"}
    [sig] = client.post("/api/v1/signals", json=body, headers=OPS).json()["signals"]
    assert sig["dedup_key"] == "rw-2025-03-03"
    with db() as s:
        [item] = service.list_outbox(db_session=s)
        request = item.payload["payload"]["request"]  # the ransomware flow's typed request
        assert (request["share"], request["dedup_key"], request["source"]) == ("finance", "rw-2025-03-03", "generic")
        incident, _ = service.open_or_join_incident(
            db_session=s, title="勒索软件", signal=Signal(source="generic", emergency_type="ransomware",
                                                      resource="fileserver:finance", dedup_key="rw-2025-03-03"))
        incident_id = incident.id
    r = client.post("/api/v1/signals", json={**body, "status": "resolved"}, headers=OPS)
    assert r.status_code == 202
    with db() as s:
        assert s.get(Incident, incident_id).status == "resolved"


def test_generic_unknown_type_and_bad_fields_name_the_field(client, db):
    r = client.post("/api/v1/signals", json={"emergency_type": "alien_invasion", "resource": "x:y"}, headers=OPS)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "emergency_type"
    r = client.post("/api/v1/signals", json={"emergency_type": "ledger_loss", "resource": "ledger:C1",
                                             "status": "maybe", "extra": 1}, headers=OPS)
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"status", "extra"}
    with db() as s:
        assert s.scalar(select(func.count()).select_from(SignalRecord)) == 0


def test_generic_labels_only_are_routed(client):
    r = client.post("/api/v1/signals", json={"labels": {"alertname": "BackupStale", "backup_target": "offsite"},
                                             "summary": "offsite copy is 3 days old"}, headers=OPS)
    [sig] = r.json()["signals"]
    assert (sig["emergency_type"], sig["resource"]) == ("backup_failure", "backups:offsite")


def test_prometheus_credential_may_not_post_generic_signals(client, db):
    r = client.post("/api/v1/signals", json={"emergency_type": "ledger_loss", "resource": "ledger:C1"},
                    headers=PROM)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    with db() as s:
        assert s.scalar(select(func.count()).select_from(SignalRecord)) == 0
        [req] = s.scalars(select(IntakeRequest))
        assert (req.status, req.http_status, req.token_id) == ("rejected", 403, "prometheus")
