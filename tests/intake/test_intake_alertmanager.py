"""Alertmanager v4 and Grafana through real HTTP into a real SQLite register."""

from __future__ import annotations

from sqlalchemy import func, select

from ledgerguard.models import Signal
from ledgerguard.register import service
from ledgerguard.register.models import Incident, IntakeRequest, SignalRecord
from ledgerguard.response.models import BackupFailureRequest, LedgerLossRequest
from tests.intake.conftest import PROM, am_alert, am_body


def _count(s, model) -> int:
    return s.scalar(select(func.count()).select_from(model))


def _open_incident(db, dedup_key: str, resource: str = "ledger:C0001", type_: str = "ledger_loss") -> str:
    """What the ledger-loss flow run does when the event reaches it."""
    with db() as s:
        incident, _ = service.open_or_join_incident(
            db_session=s, title="账套误删/损坏", signal=Signal(source="alertmanager", emergency_type=type_,
                                                          resource=resource, dedup_key=dedup_key))
        for item in service.list_outbox(db_session=s, status="pending"):
            service.mark_outbox_delivered(db_session=s, item_id=item.id)
        return incident.id


def test_alertmanager_payload_writes_signals_and_events_before_202(client, db, am_payload):
    r = client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "accepted" and "warnings" not in body
    ledger, backup = body["signals"]
    assert (ledger["emergency_type"], ledger["resource"], ledger["dedup_key"], ledger["status"]) == (
        "ledger_loss", "ledger:C0001", "ledger_loss:ledger:C0001", "queued")
    assert (backup["emergency_type"], backup["resource"], backup["dedup_key"]) == (
        "backup_failure", "backups:nightly", "backup_failure:backups:nightly")

    with db() as s:
        req = s.get(IntakeRequest, body["request_id"])
        assert req.status == "accepted" and req.http_status == 202 and req.token_id == "prometheus"
        assert req.signal_ids == [ledger["id"], backup["id"]] and len(req.body_sha256) == 64
        rec = s.get(SignalRecord, ledger["id"])
        assert rec.action == "firing" and rec.status == "queued" and rec.fingerprint == "7a1f3c2b9d4e5f60"
        assert rec.summary == "客户 C0001 账套凭证数骤降 42%" and rec.labels["client_id"] == "C0001"
        assert rec.observed_at.isoformat().startswith("2025-03-03T01:58:30")
        [item] = service.list_outbox(db_session=s, signal_id=ledger["id"])
        event = item.payload
        assert item.status == "pending" and event["id"] == ledger["event_id"]
        assert event["event"] == "ledgerguard.signal.firing"
        assert event["resource"]["prefect.resource.id"] == "ledgerguard.signal.ledger_loss.ledger_loss_ledger_C0001"
        assert event["resource"]["ledgerguard.dedup_key"] == "ledger_loss:ledger:C0001"
        assert event["payload"]["signal_id"] == ledger["id"] and event["payload"]["emergency_type"] == "ledger_loss"
        request = LedgerLossRequest.model_validate(event["payload"]["request"])
        assert (request.client_id, request.source, request.requested_by, request.dedup_key, request.drill) == (
            "C0001", "alertmanager", "prometheus", "ledger_loss:ledger:C0001", False)
        [bitem] = service.list_outbox(db_session=s, signal_id=backup["id"])
        assert BackupFailureRequest.model_validate(bitem.payload["payload"]["request"]).backup_target == "nightly"
        assert _count(s, Incident) == 0  # the flow run opens it, not the intake


def test_same_alert_again_joins_the_open_incident_and_still_emits(client, db, am_payload):
    am_payload["alerts"] = am_payload["alerts"][:1]
    assert client.post("/api/v1/alertmanager", json=am_payload, headers=PROM).status_code == 202
    incident_id = _open_incident(db, "ledger_loss:ledger:C0001")

    r = client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    assert r.status_code == 202
    [sig] = r.json()["signals"]
    assert sig["incident_id"] == incident_id and sig["status"] == "queued" and sig["event_id"]
    with db() as s:
        assert _count(s, Incident) == 1
        kinds = [e.kind for e in service.get_timeline(db_session=s, incident_id=incident_id)]
        assert kinds == ["opened", "signal_joined"]
        assert s.get(SignalRecord, sig["id"]).incident_id == incident_id
        assert len(service.list_outbox(db_session=s)) == 2


def test_repeat_while_the_first_event_waits_is_coalesced(client, db, am_payload):
    am_payload["alerts"] = am_payload["alerts"][:1]
    client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    r = client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    [sig] = r.json()["signals"]
    assert sig["status"] == "coalesced" and sig["event_id"] is None
    with db() as s:
        assert len(service.list_outbox(db_session=s)) == 1
        assert service.count_signals(db_session=s, dedup_key="ledger_loss:ledger:C0001",
                                     since=s.get(SignalRecord, sig["id"]).received_at.replace(year=2000)) == 2


def test_resolved_alert_resolves_the_incident_and_emits_resolved(client, db, am_payload):
    am_payload["alerts"] = am_payload["alerts"][:1]
    client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    incident_id = _open_incident(db, "ledger_loss:ledger:C0001")

    am_payload["status"] = "resolved"
    am_payload["alerts"][0].update(status="resolved", endsAt="2025-03-03T03:00:00Z")
    r = client.post("/api/v1/alertmanager", json=am_payload, headers=PROM)
    assert r.status_code == 202
    [sig] = r.json()["signals"]
    assert sig["action"] == "resolve" and sig["incident_status"] == "resolved"
    with db() as s:
        incident = s.get(Incident, incident_id)
        assert incident.status == "resolved" and incident.open_dedup_key is None
        status = service.get_timeline(db_session=s, incident_id=incident_id)[-1]
        assert status.kind == "status" and status.actor == "prometheus" and status.data["to"] == "resolved"
        [item] = service.list_outbox(db_session=s, signal_id=sig["id"])
        assert item.payload["event"] == "ledgerguard.signal.resolved"
        assert item.payload["payload"]["incident_id"] == incident_id


def test_grouped_incident_stays_open_until_every_alert_resolved(make_client, db_router_factory):
    client, db = db_router_factory(group_by="[alertname]")
    alerts = [am_alert({"alertname": "LedgerRowCountDrop", "client_id": f"C000{i}"}, fingerprint=f"fp{i}")
              for i in (1, 2)]
    client.post("/api/v1/alertmanager", json=am_body(*alerts), headers=PROM)
    incident_id = _open_incident(db, "ledger_loss:ledger:C0001")

    first = dict(alerts[0], status="resolved")
    r = client.post("/api/v1/alertmanager", json=am_body(first, alerts[1]), headers=PROM)
    assert r.status_code == 202
    with db() as s:
        assert s.get(Incident, incident_id).status == "open"
    second = dict(alerts[1], status="resolved")
    client.post("/api/v1/alertmanager", json=am_body(first, second, status="resolved"), headers=PROM)
    with db() as s:
        assert s.get(Incident, incident_id).status == "resolved"


def test_five_alerts_of_one_group_share_one_dedup_key(db_router_factory):
    client, db = db_router_factory(group_by="[alertname]")
    alerts = [am_alert({"alertname": "LedgerRowCountDrop", "client_id": f"C000{i}"}, fingerprint=f"fp{i}")
              for i in range(1, 6)]
    for alert in alerts:  # five requests, as Alertmanager would send them
        assert client.post("/api/v1/alertmanager", json=am_body(alert), headers=PROM).status_code == 202
    with db() as s:
        rows = list(s.scalars(select(SignalRecord).order_by(SignalRecord.received_at)))
        assert len(rows) == 5 and {r.dedup_key for r in rows} == {"ledger_loss:ledger:C0001"}
        assert [r.status for r in rows] == ["queued"] + ["coalesced"] * 4
        assert len(service.list_outbox(db_session=s)) == 1
    # another group is another incident
    other = am_alert({"alertname": "LedgerTrialBalanceMismatch", "client_id": "C0009"}, fingerprint="x")
    [sig] = client.post("/api/v1/alertmanager", json=am_body(other), headers=PROM).json()["signals"]
    assert sig["dedup_key"] == "ledger_loss:ledger:C0009"


def test_flapping_above_the_threshold_is_recorded_without_events(db_router_factory):
    client, db = db_router_factory(group_by="[]", flap_threshold=3, flap_window_seconds=600)
    alert = am_alert({"alertname": "LedgerRowCountDrop", "client_id": "C0001"}, fingerprint="flap")
    client.post("/api/v1/alertmanager", json=am_body(alert), headers=PROM)
    incident_id = _open_incident(db, "ledger_loss:ledger:C0001")
    statuses = []
    for _ in range(4):
        [sig] = client.post("/api/v1/alertmanager", json=am_body(alert), headers=PROM).json()["signals"]
        statuses.append(sig["status"])
        with db() as s:
            for item in service.list_outbox(db_session=s, status="pending"):
                service.mark_outbox_delivered(db_session=s, item_id=item.id)
    assert statuses == ["queued", "queued", "suppressed", "suppressed"]
    with db() as s:
        assert len(service.list_outbox(db_session=s)) == 3  # 1 + 2 queued; none for the suppressed
        assert _count(s, SignalRecord) == 6  # 5 from the intake, 1 recorded by the (simulated) flow run
        entries = service.get_timeline(db_session=s, incident_id=incident_id)
        flapping = [e for e in entries if e.kind == "flapping"]
        # one entry per episode, not one per suppressed signal; every signal stays linked
        assert len(flapping) == 1 and flapping[0].message.startswith("flapping: suppressed")
        suppressed = s.scalars(select(SignalRecord).where(SignalRecord.status == "suppressed")).all()
        assert len(suppressed) == 2 and {r.incident_id for r in suppressed} == {incident_id}


def test_unrouted_labels_are_recorded_and_answered_202_with_a_warning(client, db):
    alert = am_alert({"alertname": "SomethingNobodyRoutes", "team": "x"}, fingerprint="u1")
    r = client.post("/api/v1/alertmanager", json=am_body(alert), headers=PROM)
    assert r.status_code == 202
    body = r.json()
    assert body["warnings"] and "SomethingNobodyRoutes" in body["warnings"][0]
    [sig] = body["signals"]
    assert sig["status"] == "unrouted" and sig["event_id"] is None
    with db() as s:
        rec = s.get(SignalRecord, sig["id"])
        assert rec.emergency_type == "unrouted" and "no route matches" in rec.payload["reason"]
        assert service.list_outbox(db_session=s) == []


def test_route_template_missing_label_is_unrouted_not_dropped(client, db):
    alert = am_alert({"alertname": "LedgerRowCountDrop"}, fingerprint="nolabel")  # no client_id
    r = client.post("/api/v1/alertmanager", json=am_body(alert), headers=PROM)
    assert r.status_code == 202 and r.json()["signals"][0]["status"] == "unrouted"
    assert "client_id" in r.json()["warnings"][0]


def test_invalid_client_id_is_unrouted_with_the_reason(client):
    alert = am_alert({"alertname": "LedgerRowCountDrop", "client_id": "C0001;drop"}, fingerprint="bad")
    r = client.post("/api/v1/alertmanager", json=am_body(alert), headers=PROM)
    assert r.status_code == 202 and r.json()["signals"][0]["status"] == "unrouted"
    assert "client_id" in r.json()["warnings"][0]


def test_grafana_payload(client, db):
    payload = {
        "receiver": "ledgerguard", "status": "firing", "orgId": 1, "title": "[FIRING:1] BackupStale",
        "state": "alerting", "message": "**Firing**", "version": "1", "groupKey": "{}:{}",
        "groupLabels": {"alertname": "BackupStale"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://grafana.agency.example/", "truncatedAlerts": 0,
        "alerts": [{"status": "firing", "labels": {"alertname": "BackupStale", "backup_target": "weekly"},
                    "annotations": {}, "startsAt": "2025-03-03T02:00:00+08:00", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://grafana/alerting/grafana/abc/view", "fingerprint": "g1",
                    "silenceURL": "http://grafana/silence", "dashboardURL": "", "panelURL": "",
                    "values": {"B": 30.5}, "valueString": "[ var='B' value=30.5 ]"}],
    }
    r = client.post("/api/v1/grafana", json=payload, headers=PROM)
    assert r.status_code == 202, r.text
    [sig] = r.json()["signals"]
    assert (sig["emergency_type"], sig["resource"]) == ("backup_failure", "backups:weekly")
    with db() as s:
        rec = s.get(SignalRecord, sig["id"])
        assert rec.source == "grafana" and rec.summary == "[FIRING:1] BackupStale"
        assert rec.observed_at.hour == 18  # 02:00+08:00 stored as UTC
