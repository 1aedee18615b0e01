"""Resolve events, the watchdog page and the sweeps, each through the served deployments."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx
import pytest

from tests.deployments.conftest import api, wait_for

pytestmark = pytest.mark.prefect


def _finished(served, deployment: str, before: set[str], timeout: float = 120) -> dict:
    def check():
        runs = [r for r in served.flow_runs(deployment=deployment) if r["id"] not in before]
        done = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
        return done[0] if done else None

    return wait_for(check, timeout=timeout, what=f"a {deployment} run to finish")


def _run_deployment(served, flow: str, name: str, parameters: dict) -> str:
    deployment = served.deployment(flow, name)
    response = api("POST", f"{served.api_url}/deployments/{deployment['id']}/create_flow_run",
                   json={"parameters": parameters})
    response.raise_for_status()
    return response.json()["id"]


def test_a_resolved_event_notes_the_resolve_and_sends_the_report(served):
    from ledgerguard.classification.service import classify
    from ledgerguard.models import IncidentStatus, Signal
    from ledgerguard.register import service as register

    runtime = served.runtime()
    dedup = f"am:resolve:{uuid.uuid4().hex[:6]}"
    with runtime.session() as db_session:
        incident, _ = register.open_or_join_incident(
            db_session=db_session, title="账套误删/损坏: ledger:C0003",
            signal=Signal(source="alertmanager", emergency_type="ledger_loss", resource="ledger:C0003",
                          dedup_key=dedup))
        incident_id = incident.id
        entry = runtime.catalog.get("ledger_loss")
        assessment = classify(entry=entry, rubric=runtime.catalog.rubric, calendar=runtime.catalog.calendar,
                              facts={"row_drop_pct": 40, "clients_affected": 1, "affected_clients": ["C0003"]},
                              detected_at=datetime.now(timezone.utc), language="zh-CN")
        register.apply_assessment(db_session=db_session, incident_id=incident_id, assessment=assessment,
                                  affected_clients=["C0003"])
    mails_before = len(served.sink.paths())
    before = {r["id"] for r in served.flow_runs(deployment="resolve-incident")}
    event = {"id": str(uuid.uuid4()), "occurred": datetime.now(timezone.utc).isoformat(),
             "event": "ledgerguard.signal.resolved",
             "resource": {"prefect.resource.id": f"ledgerguard.signal.ledger_loss.{dedup}",
                          "ledgerguard.emergency_type": "ledger_loss", "ledgerguard.dedup_key": dedup},
             "payload": {"signal_id": "sig-1", "emergency_type": "ledger_loss", "request": None}}
    assert served.post_events([event]).status_code == 204
    run = _finished(served, "resolve-incident", before)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["parameters"] == {"emergency_type": "ledger_loss", "dedup_key": dedup, "signal_id": "sig-1"}
    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        kinds = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=incident_id)]
    assert incident.status == IncidentStatus.RESOLVED.value
    assert "resolve.received" in kinds
    assert len(served.sink.paths()) > mails_before  # the report went to the management list


def test_a_failed_emergency_run_pages_the_duty_lead_once_and_leaves_the_incident_open(served):
    """An unknown client makes every detector fail: the run fails, the automation pages."""
    from sqlalchemy import select

    from ledgerguard.register import service as register
    from ledgerguard.register.models import Incident

    before_pages = {r["id"] for r in served.flow_runs(deployment="page-duty-lead")}
    failed_id = _run_deployment(served, "ledger-loss", "ledger-loss", {"request": {
        "client_id": "C9999", "source": "manual", "requested_by": "test", "remediate": False,
        "dedup_key": "watchdog:ledger:C9999"}})
    page = _finished(served, "page-duty-lead", before_pages, timeout=150)
    assert page["state_type"] == "COMPLETED", page["state"]
    # The respond subflow fails first; every page resolves to the root emergency run.
    failed = httpx.get(f"{served.api_url}/flow_runs/{failed_id}", timeout=10).json()
    assert failed["state_type"] == "FAILED"

    runtime = served.runtime()
    with runtime.session() as db_session:
        incident = db_session.scalars(select(Incident).where(Incident.dedup_key == "watchdog:ledger:C9999")).one()
        timeline = register.get_timeline(db_session=db_session, incident_id=incident.id)
        pages = [n for n in register.list_notifications(db_session=db_session, incident_id=incident.id)
                 if n.step == f"watchdog:{failed_id}"]
    assert incident.status == "open"
    assert "watchdog.run_failed" in [e.kind for e in timeline]
    assert pages and all(n.status == "sent" for n in pages)
    mails = [m for m in served.sink.messages() if failed_id in (m.get_body(("plain",)).get_content())]
    assert mails and "值班告警" in str(mails[0]["Subject"])
    # The respond subflow failed too (its own Failed event): still one page per recipient.
    pages_runs = wait_for(lambda: [r for r in served.flow_runs(deployment="page-duty-lead")
                                   if r["id"] not in before_pages and r["state_type"] == "COMPLETED"
                                   and r["parameters"]["flow_run_id"] == failed_id], timeout=60)
    assert pages_runs
    with runtime.session() as db_session:
        again = [n for n in register.list_notifications(db_session=db_session, incident_id=incident.id)
                 if n.step == f"watchdog:{failed_id}"]
    assert len(again) == len(pages)


def test_a_ledger_sweep_finding_goes_through_the_signal_path_to_the_emergency_flow(served):
    from ledgerguard.agency import load_agency
    from ledgerguard.detectors import get_injector
    from ledgerguard.detectors.base import InjectionContext

    agency = load_agency(served.home / "agency")
    get_injector("ledger.delete_vouchers").inject(
        InjectionContext(agency=agency, resource="ledger:C0004", scratch_dir=served.home / "scratch"), count=5)
    before_loss = {r["id"] for r in served.flow_runs(deployment="ledger-loss")}
    before_sweep = {r["id"] for r in served.flow_runs(deployment="ledger-sweep")}
    _run_deployment(served, "ledger-sweep", "ledger-sweep", {})
    sweep = _finished(served, "ledger-sweep", before_sweep)
    assert sweep["state_type"] == "COMPLETED", sweep["state"]

    def triggered():
        return [r for r in served.flow_runs(deployment="ledger-loss")
                if r["id"] not in before_loss and r["parameters"]["request"].get("client_id") == "C0004"]

    try:
        (run,) = wait_for(triggered, timeout=60, what="the sweep's signal to start ledger-loss")
    except TimeoutError:
        events = api("POST", f"{served.api_url}/events/filter", json={"limit": 50}).json()["events"]
        for e in events:
            if e["event"].startswith(("ledgerguard", "prefect.automation")):
                print(e["event"], e["resource"], str(e["payload"])[:600])
        raise
    assert run["parameters"]["request"]["source"] == "sweep"
    artifacts = httpx.post(f"{served.api_url}/artifacts/filter",
                           json={"artifacts": {"key": {"any_": ["ledger-sweep"]}}}, timeout=10).json()
    assert artifacts and artifacts[0]["type"] == "table"
