"""Issue 3, end to end: an Alertmanager alert → intake (real port) → register + outbox → relay →
Prefect event → served `ledger-loss` deployment → incident, tags, artifacts and emails.

One stack for the module (tests/e2e/conftest.py); the tests run in order and build on each other
(the repeat, the manual run and the resolve all meet the incident the first alert opened).
Every wait polls with a deadline.
"""

from __future__ import annotations

import copy
import json
import time

import pytest
from sqlalchemy import func, select

from tests.support.served import api, wait_for

pytestmark = pytest.mark.prefect

CLIENT = "C0002"
OTHER_CLIENT = "C0003"  # the alert sent while Prefect is down
FIXTURE = "tests/intake/fixtures/alertmanager_v4.json"
state: dict = {}


def _payload(client_id: str, status: str = "firing") -> dict:
    from ledgerguard.config import PROJECT_ROOT

    data = json.loads((PROJECT_ROOT / FIXTURE).read_text(encoding="utf-8"))
    alert = copy.deepcopy(data["alerts"][0])  # LedgerRowCountDrop → route ledger-loss
    alert["labels"]["client_id"] = client_id
    alert["fingerprint"] = f"e2e-{client_id.lower()}"
    alert["annotations"]["summary"] = f"客户 {client_id} 账套凭证数骤降"
    alert["status"] = status
    if status == "resolved":
        alert["endsAt"] = "2025-03-03T03:00:00Z"
    data.update(status=status, alerts=[alert], commonLabels={**data["commonLabels"], "client_id": client_id})
    return data


def _break_ledger(stack, client_id: str) -> None:
    from ledgerguard.agency import load_agency
    from ledgerguard.detectors import get_injector
    from ledgerguard.detectors.base import InjectionContext

    home = stack.served.home
    get_injector("ledger.delete_vouchers").inject(
        InjectionContext(agency=load_agency(home / "agency"), resource=f"ledger:{client_id}",
                         scratch_dir=home / "scratch"), count=5)


def _runs_for(stack, client_id: str, exclude: set[str] = frozenset()) -> list[dict]:
    return [r for r in stack.served.flow_runs(deployment="ledger-loss")
            if r["id"] not in exclude and (r["parameters"].get("request") or {}).get("client_id") == client_id]


def _finished_run(stack, client_id: str, exclude: set[str], timeout: float = 120) -> dict:
    def check():
        done = [r for r in _runs_for(stack, client_id, exclude)
                if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
        return done[0] if done else None

    return wait_for(check, timeout=timeout, what=f"a ledger-loss run for {client_id} to finish")


def _incidents(stack, resource: str) -> list:
    from ledgerguard.register.models import Incident

    with stack.served.runtime().session() as db_session:
        rows = db_session.scalars(select(Incident).where(Incident.resource == resource)).all()
        db_session.expunge_all()
        return list(rows)


def _timeline(stack, incident_id: str) -> list:
    from ledgerguard.register import service as register

    with stack.served.runtime().session() as db_session:
        rows = register.get_timeline(db_session=db_session, incident_id=incident_id)
        db_session.expunge_all()
        return rows


def _outbox_item(stack, signal_id: str):
    from ledgerguard.register import service as register

    with stack.served.runtime().session() as db_session:
        (item,) = register.list_outbox(db_session=db_session, signal_id=signal_id)
        db_session.expunge(item)
        return item


def _register_counts(stack) -> dict[str, int]:
    from ledgerguard.register.models import Incident, OutboxItem, SignalRecord, TimelineEntry

    with stack.served.runtime().session() as db_session:
        return {model.__name__: db_session.scalar(select(func.count()).select_from(model))
                for model in (Incident, SignalRecord, OutboxItem, TimelineEntry)}


def _needs_first_incident() -> str:
    if "incident_id" not in state:
        pytest.skip("needs the incident opened by the first test of this module")
    return state["incident_id"]


def _mail_count(stack) -> int:
    return len(stack.served.sink.paths())


def test_an_alert_opens_an_incident_runs_the_flow_and_sends_email(stack):
    _break_ledger(stack, CLIENT)
    mails_before = _mail_count(stack)
    before = {r["id"] for r in _runs_for(stack, CLIENT)}

    response = stack.post("/api/v1/alertmanager", _payload(CLIENT))
    assert response.status_code == 202, response.text
    (sig,) = response.json()["signals"]
    assert sig["emergency_type"] == "ledger_loss" and sig["resource"] == f"ledger:{CLIENT}", sig
    assert sig["status"] == "queued" and sig["event_id"], sig
    # Written before the 202: the signal and its outbox row are already in the register.
    assert _outbox_item(stack, sig["id"]).status in ("pending", "delivered", "failed")

    run = _finished_run(stack, CLIENT, before)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["parameters"]["request"]["dedup_key"] == sig["dedup_key"]
    assert _outbox_item(stack, sig["id"]).status == "delivered"

    (incident,) = wait_for(lambda: _incidents(stack, f"ledger:{CLIENT}"), timeout=30, what="the incident")
    assert incident.dedup_key == sig["dedup_key"] and incident.level
    run = api("GET", f"{stack.served.api_url}/flow_runs/{run['id']}").json()
    assert "emergency:ledger_loss" in run["tags"] and f"level:{incident.level}" in run["tags"], run["tags"]
    keys = [f"postmortem-{incident.id}", f"timeline-{incident.id}"]
    artifacts = api("POST", f"{stack.served.api_url}/artifacts/filter",
                    json={"artifacts": {"key": {"any_": keys}}}).json()
    assert {a["key"] for a in artifacts} == set(keys)

    wait_for(lambda: _mail_count(stack) > mails_before, timeout=30, what="emails in the sink")
    mails = stack.served.sink.messages()
    assert any(incident.id in m.get_body(("html", "plain")).get_content() for m in mails)
    state.update(incident_id=incident.id, dedup_key=sig["dedup_key"], runs={r["id"] for r in _runs_for(stack, CLIENT)})


def test_the_same_alert_again_joins_the_timeline_and_sends_nothing_new(stack):
    incident_id = _needs_first_incident()
    timeline_before = len(_timeline(stack, incident_id))
    mails_before = _mail_count(stack)

    response = stack.post("/api/v1/alertmanager", _payload(CLIENT))
    assert response.status_code == 202, response.text
    (sig,) = response.json()["signals"]
    assert sig["dedup_key"] == state["dedup_key"] and sig["incident_id"] == incident_id, sig

    if sig["event_id"]:  # the repeat still reaches the flow, which meets the same incident
        run = _finished_run(stack, CLIENT, state["runs"])
        assert run["state_type"] == "COMPLETED", run["state"]
        wait_for(lambda: _outbox_item(stack, sig["id"]).status == "delivered", timeout=30, what="delivery")
    kinds = [e.kind for e in _timeline(stack, incident_id)[timeline_before:]]
    assert "signal_joined" in kinds, kinds
    assert len(_incidents(stack, f"ledger:{CLIENT}")) == 1
    time.sleep(1.0)  # the run is over; give a straggling SMTP session a moment before counting
    assert _mail_count(stack) == mails_before, [str(m["Subject"]) for m in stack.served.sink.messages()[mails_before:]]
    state["runs"] = {r["id"] for r in _runs_for(stack, CLIENT)}


def test_a_manual_run_of_the_deployment_meets_the_same_incident(stack):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    incident_id = _needs_first_incident()
    timeline_before = len(_timeline(stack, incident_id))
    with temporary_settings({PREFECT_API_URL: stack.served.api_url}):
        run = run_deployment("ledger-loss/ledger-loss", timeout=150, poll_interval=1, parameters={
            "request": {"client_id": CLIENT, "source": "manual", "requested_by": "e2e-operator"}})
    assert run.state.is_completed(), run.state
    assert "emergency:ledger_loss" in run.tags
    (incident,) = _incidents(stack, f"ledger:{CLIENT}")
    assert incident.id == incident_id
    assert len(_timeline(stack, incident_id)) > timeline_before


def test_a_resolved_alert_resolves_the_incident(stack):
    incident_id = _needs_first_incident()
    before = {r["id"] for r in stack.served.flow_runs(deployment="resolve-incident")}
    response = stack.post("/api/v1/alertmanager", _payload(CLIENT, status="resolved"))
    assert response.status_code == 202, response.text
    (sig,) = response.json()["signals"]
    assert sig["action"] == "resolve" and sig["incident_id"] == incident_id, sig
    (incident,) = _incidents(stack, f"ledger:{CLIENT}")
    assert incident.status == "resolved"  # in the register before the 202

    def resolve_run():
        runs = [r for r in stack.served.flow_runs(deployment="resolve-incident") if r["id"] not in before
                and r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
        return runs[0] if runs else None

    run = wait_for(resolve_run, timeout=120, what="the resolve-incident run")
    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["parameters"]["dedup_key"] == state["dedup_key"]
    kinds = [e.kind for e in _timeline(stack, incident_id)]
    assert "resolve.received" in kinds, kinds
    (incident,) = _incidents(stack, f"ledger:{CLIENT}")
    assert incident.status == "resolved"


@pytest.mark.parametrize("case", ["no-token", "wrong-token", "not-json", "no-version", "no-alerts"])
def test_malformed_or_unauthenticated_requests_get_4xx_and_change_nothing(stack, case):
    before = _register_counts(stack)
    good = _payload(OTHER_CLIENT)
    if case == "no-token":
        response = stack.post("/api/v1/alertmanager", good, token="")
        expected = 401
    elif case == "wrong-token":
        response = stack.post("/api/v1/alertmanager", good, token="not-a-valid-token-at-all-123")
        expected = 401
    elif case == "not-json":
        response = stack.post("/api/v1/alertmanager", raw=b'{"version": "4", "alerts": [')
        expected = 400
    elif case == "no-version":
        good.pop("version")
        response = stack.post("/api/v1/alertmanager", good)
        expected = 422
    else:
        good["alerts"][0].pop("labels")
        response = stack.post("/api/v1/alertmanager", good)
        expected = 422
    assert response.status_code == expected, response.text
    body = response.json()
    assert body["error"] in ("unauthorized", "malformed", "invalid"), body
    if expected == 422:
        assert any(e["field"] for e in body["errors"]), body
    assert _register_counts(stack) == before


def test_with_prefect_down_alerts_are_accepted_and_processed_after_it_restarts(stack):
    served = stack.served
    _break_ledger(stack, OTHER_CLIENT)
    port = served.server.port
    mails_before = _mail_count(stack)
    served.server.stop()
    wait_for(lambda: not _port_open(port), timeout=20, what="the Prefect server to stop")

    response = stack.post("/api/v1/alertmanager", _payload(OTHER_CLIENT))
    assert response.status_code == 202, response.text
    (sig,) = response.json()["signals"]
    # The relay tries, fails and keeps the row for later, again and again (never dropped or parked).
    item = wait_for(lambda: (i := _outbox_item(stack, sig["id"])).attempts >= 2 and i, timeout=30,
                    what="two failed delivery attempts")
    assert item.status == "failed" and item.last_error, (item.status, item.last_error)

    served.server.start()  # the same port and database
    assert served.server.port == port and served.server.api_url == served.api_url
    # `ledgerguard serve` rides out the outage (Prefect's client retries a refused connection once
    # it has connected); if it exited, `ledgerguard up` would stop the whole stack.
    assert served.process.poll() is None, (served.home / "serve.log").read_text()[-3000:]
    wait_for(served.serve_ready, timeout=120, what="the deployments served again")

    wait_for(lambda: _outbox_item(stack, sig["id"]).status == "delivered", timeout=90,
             what="the pending outbox row delivered after the restart")
    run = _finished_run(stack, OTHER_CLIENT, set(), timeout=150)
    assert run["state_type"] == "COMPLETED", run["state"]
    (incident,) = wait_for(lambda: _incidents(stack, f"ledger:{OTHER_CLIENT}"), timeout=30,
                           what="the incident of the alert sent while Prefect was down")
    assert incident.dedup_key == sig["dedup_key"]
    wait_for(lambda: _mail_count(stack) > mails_before, timeout=30, what="emails for the second client")
    mails = served.sink.messages()[mails_before:]
    assert any(incident.id in m.get_body(("html", "plain")).get_content() for m in mails)
    assert len(_runs_for(stack, OTHER_CLIENT)) == 1  # delivered once: one run


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
