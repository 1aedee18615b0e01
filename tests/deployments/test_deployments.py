"""Deployments as data, proven against a real Prefect server with every deployment served."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest

from tests.deployments.conftest import wait_for

pytestmark = pytest.mark.prefect


def firing_event(*, emergency_type: str, dedup_key: str, request: dict | None, event_id: str | None = None) -> dict:
    return {
        "id": event_id or str(uuid.uuid4()),
        "occurred": datetime.now(timezone.utc).isoformat(),
        "event": "ledgerguard.signal.firing",
        "resource": {"prefect.resource.id": f"ledgerguard.signal.{emergency_type}.{dedup_key}",
                     "ledgerguard.emergency_type": emergency_type, "ledgerguard.dedup_key": dedup_key},
        "payload": {"signal_id": uuid.uuid4().hex, "emergency_type": emergency_type, "request": request},
    }


def test_every_spec_builds_a_deployment_with_times_in_the_agency_zone():
    from prefect.events import DeploymentEventTrigger

    from deployments import DEPLOYMENTS, REQUEST_FROM_EVENT

    names = [s.name for s in DEPLOYMENTS]
    assert len(names) == len(set(names))
    assert {"ledger-loss", "backup-failure", "ledger-sweep", "backup-sweep", "resolve-incident",
            "page-duty-lead"} <= set(names)
    for spec in DEPLOYMENTS:
        deployment = spec.to_deployment()
        assert deployment.name == spec.name
        assert deployment.tags == list(spec.tags)
        for schedule in deployment.schedules:
            assert schedule.schedule.timezone == "Asia/Shanghai", spec.name
        for trigger in deployment.triggers:
            assert isinstance(trigger, DeploymentEventTrigger)
    from flows import EMERGENCY_FLOWS
    from ledgerguard.catalog.service import load_catalog
    from ledgerguard.config import get_settings

    by_name = {s.name: s for s in DEPLOYMENTS}
    # every emergency type of the catalog has its flow and a deployment its signals start
    assert set(EMERGENCY_FLOWS) == {e.id for e in load_catalog(get_settings().catalog_dir)}
    for etype, emergency_flow in EMERGENCY_FLOWS.items():
        name = emergency_flow.name
        assert by_name[name].tags == (f"emergency:{etype}",)
        (trigger,) = by_name[name].triggers
        assert trigger.expect == {"ledgerguard.signal.firing"}
        assert trigger.match.model_dump()["prefect.resource.id"] == f"ledgerguard.signal.{etype}.*"
        assert trigger.parameters == {"request": REQUEST_FROM_EVENT}
    assert {s.schedule.cron for s in by_name["ledger-sweep"].to_deployment().schedules} == {
        "*/15 8-20 * * 1-6", "0 0-7,21-23 * * 1-6", "0 * * * 0"}
    (interval,) = by_name["backup-sweep"].to_deployment().schedules
    assert interval.schedule.interval.total_seconds() == 600
    # the monthly compliance report: the 1st at 09:00 agency time, last month by default
    (monthly,) = by_name["monthly-report"].to_deployment().schedules
    assert monthly.schedule.cron == "0 9 1 * *" and monthly.schedule.timezone == "Asia/Shanghai"
    assert by_name["monthly-report"].parameters == {} and by_name["monthly-report"].concurrency_limit == 1
    # the post-mortem sweep in the evening, the consistency check before the office opens
    assert [s.schedule.cron for s in by_name["postmortem-sweep"].to_deployment().schedules] == ["30 18 * * *"]
    assert [s.schedule.cron for s in by_name["consistency-check"].to_deployment().schedules] == ["0 7 * * *"]
    # the post-mortem's form carries the person's review: root cause and action items are fields
    schema = by_name["postmortem"].to_deployment()._parameter_openapi_schema.model_dump()
    review = schema["definitions"]["PostmortemReviewInput"]["properties"]
    assert {"root_cause", "contributing_factors", "lessons", "action_items", "entered_by"} <= set(review)


def test_schedules_can_be_served_paused_and_switched_on_in_the_ui(monkeypatch):
    from deployments import DEPLOYMENTS
    from ledgerguard.config import reset_settings

    scheduled = [s for s in DEPLOYMENTS if s.schedules]
    assert all(d.active for s in scheduled for d in s.to_deployment().schedules)
    monkeypatch.setenv("LEDGERGUARD_SCHEDULES_ACTIVE", "false")
    reset_settings()
    try:
        paused = [d for s in scheduled for d in s.to_deployment().schedules]
        assert paused and not any(d.active for d in paused)
        # the same times, only paused
        assert {d.schedule.cron for d in next(s for s in scheduled if s.name == "ledger-sweep")
                .to_deployment().schedules} == {"*/15 8-20 * * 1-6", "0 0-7,21-23 * * 1-6", "0 * * * 0"}
    finally:
        monkeypatch.delenv("LEDGERGUARD_SCHEDULES_ACTIVE")
        reset_settings()


def test_a_firing_event_starts_the_served_flow_with_the_typed_request(served):
    """Emit → run: the whole request object arrives as the flow's pydantic parameter."""
    before = {r["id"] for r in served.flow_runs(deployment="ledger-loss")}
    request = {"client_id": "C0002", "source": "alertmanager", "dedup_key": "am:ledger:C0002",
               "summary": "ledger row count dropped", "requested_by": "alertmanager", "drill": False,
               "remediate": False}
    event = firing_event(emergency_type="ledger_loss", dedup_key="am:ledger:C0002", request=request)
    sent = time.monotonic()
    assert served.post_events([event]).status_code == 204

    def started():
        runs = [r for r in served.flow_runs(deployment="ledger-loss") if r["id"] not in before]
        return runs if runs and runs[0].get("start_time") else None

    (run,) = wait_for(started, timeout=60, what="the ledger-loss run to start")
    latency = time.monotonic() - sent
    print(f"emit → run started: {latency:.1f} s")
    assert run["parameters"]["request"]["client_id"] == "C0002"
    assert run["parameters"]["request"]["dedup_key"] == "am:ledger:C0002"
    assert "emergency:ledger_loss" in run["tags"]

    def finished():
        runs = [r for r in served.flow_runs(deployment="ledger-loss") if r["id"] == run["id"]]
        return runs[0] if runs and runs[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED") else None

    final = wait_for(finished, timeout=120, what="the ledger-loss run to finish")
    assert final["state_type"] == "COMPLETED", final["state"]
    # The sample ledger is intact: the run records the signal under the alert's dedup key.
    from sqlalchemy import select

    from ledgerguard.register.models import SignalRecord

    with served.runtime().session() as db_session:
        keys = {s.dedup_key for s in db_session.scalars(select(SignalRecord))}
    assert "am:ledger:C0002" in keys


def test_the_same_event_id_posted_twice_starts_one_run(served):
    """Prefect stores an event id once and its trigger skips an id it already processed."""
    before = {r["id"] for r in served.flow_runs(deployment="backup-failure")}
    request = {"backup_target": "nightly", "source": "relay-test", "dedup_key": "dup:backups:nightly",
               "requested_by": "test", "remediate": False}
    event = firing_event(emergency_type="backup_failure", dedup_key="dup:backups:nightly", request=request)
    assert served.post_events([event]).status_code == 204
    assert served.post_events([event]).status_code == 204
    wait_for(lambda: [r for r in served.flow_runs(deployment="backup-failure") if r["id"] not in before],
             timeout=30, what="the backup-failure run")
    time.sleep(3)  # give a duplicate trigger firing time to show up
    new = [r for r in served.flow_runs(deployment="backup-failure") if r["id"] not in before]
    assert len(new) == 1
    import httpx

    def stored():
        response = httpx.post(f"{served.api_url}/events/filter",
                              json={"filter": {"id": {"id": [event["id"]]}}}, timeout=10)
        return response.json()["total"] if response.status_code == 200 else 0

    assert wait_for(stored, timeout=30, what="the event to be stored") == 1


def test_an_event_whose_request_fails_validation_starts_nothing(served):
    before = {r["id"] for r in served.flow_runs(deployment="ledger-loss")}
    bad = firing_event(emergency_type="ledger_loss", dedup_key="bad", request={"client_id": "not a valid id!"})
    assert served.post_events([bad]).status_code == 204
    time.sleep(3)
    assert not [r for r in served.flow_runs(deployment="ledger-loss") if r["id"] not in before]


def test_the_served_stack_registers_its_schedules_paused(served):
    sweep = served.deployment("ledger-sweep", "ledger-sweep")
    assert sweep["schedules"] and not any(s["active"] for s in sweep["schedules"])


def test_the_watchdog_automation_is_created_once_by_name(served):
    import httpx

    from deployments import WATCHDOG_AUTOMATION, ensure_watchdog_automation
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deployment = served.deployment("page-duty-lead", "page-duty-lead")
    with temporary_settings({PREFECT_API_URL: served.api_url}):
        ensure_watchdog_automation(deployment["id"])
        ensure_watchdog_automation(deployment["id"])
    automations = httpx.post(f"{served.api_url}/automations/filter", json={}, timeout=10).json()
    mine = [a for a in automations if a["name"] == WATCHDOG_AUTOMATION]
    assert len(mine) == 1
    (action,) = mine[0]["actions"]
    assert action["type"] == "run-deployment" and action["deployment_id"] == deployment["id"]
