"""Drill stages: set up the sandbox, break it, stand in for the responders, measure and score,
report. The emergency flow itself runs between them, unchanged, on the sandbox."""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ledgerguard.channels.contacts import drill_recipients, management_recipients
from ledgerguard.channels.messaging import render_message
from ledgerguard.drills import service as drills
from ledgerguard.drills.models import DrillOutcome, DrillRequest
from ledgerguard.improvements import service as improvements
from ledgerguard.models import IncidentStatus, Signal, Stage, utcnow
from ledgerguard.register import service as register
from ledgerguard.register.models import Incident
from ledgerguard.response.notifying import send_once
from ledgerguard.response.reporting import incident_snapshot, needs_pipl57_notice, pipl57_notice_path, write_text
from ledgerguard.runtime import get_runtime
from tasks.people import close_runs, form_choices, runs_tagged, stop_escalation, ui_run_url

PRODUCTION_SUMS = "production.sha256.json"


def drill_tags(drill_id: str) -> list[str]:
    return ["drill", f"drill:{drill_id}"]


def sandbox_settings(plan: dict):
    """The production settings with the agency and scratch folders of the drill's sandbox."""
    settings = get_runtime().settings
    return settings.model_copy(update={"agency_dir": Path(plan["agency"]), "contacts_file": None,
                                       "scratch": Path(plan["scratch"])})


@task(name="drill-prepare", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def prepare_drill(request: DrillRequest, drill_id: str) -> dict:
    """Copy the agency into a fresh sandbox, keep the production checksums, open the drill row."""
    runtime = get_runtime()
    entry = runtime.catalog.get(request.emergency_type)
    scenario = entry.scenario(request.scenario)
    if scenario.drill is None:
        raise drills.DrillError(f"{entry.id}: scenario {scenario.id!r} has no drill: block in "
                                f"catalog/{entry.id}.yaml; drillable: "
                                + ", ".join(s.id for s in entry.scenarios if s.drill))
    policy = runtime.catalog.drills
    root = runtime.settings.home / "drills" / drill_id
    sandbox = drills.prepare_sandbox(production=runtime.settings.agency_path, root=root)
    (root / PRODUCTION_SUMS).write_text(json.dumps(sandbox.production_checksums, indent=0), encoding="utf-8")
    as_of = drills.drill_moment(entry=entry, scenario=scenario, calendar=runtime.catalog.calendar, now=utcnow())
    expected = drills.expected_level(entry=entry, scenario=scenario, rubric=runtime.catalog.rubric,
                                     calendar=runtime.catalog.calendar, at=as_of)
    with runtime.session() as db_session:
        drills.start_drill(db_session=db_session, drill_id=drill_id, emergency_type=entry.id,
                           scenario_id=scenario.id, mode="live", requested_by=request.requested_by,
                           expected_level=expected, weights=policy.weights, sandbox=str(root),
                           flow_run_id=str(flow_run.id) if flow_run.id else None)
    get_run_logger().info("drill %s: %s/%s on a sandbox copy of %d file(s) in %s", drill_id, entry.id, scenario.id,
                          len(sandbox.production_checksums), root)
    return {"drill_id": drill_id, "emergency_type": entry.id, "scenario": scenario.id, "root": str(root),
            "agency": str(sandbox.agency), "scratch": str(sandbox.scratch), "expected_level": expected,
            "stand_in": request.stand_in, "requested_by": request.requested_by, "as_of": as_of.isoformat(),
            "time_limit_minutes": scenario.drill.time_limit_minutes}


@task(name="drill-inject", retries=0, cache_policy=NO_CACHE)
def inject_fault(plan: dict) -> dict:
    """Break the sandbox with the type's own injectors (never production: the agency loaded here
    is the sandbox's)."""
    from ledgerguard.agency import load_agency

    runtime = get_runtime()
    entry = runtime.catalog.get(plan["emergency_type"])
    scenario = entry.scenario(plan["scenario"])
    agency = load_agency(Path(plan["agency"]))
    if Path(agency.root).resolve() == runtime.settings.agency_path.resolve():
        raise drills.DrillError("refusing to inject into the production agency folder")
    injected_at = utcnow()
    as_of = datetime.fromisoformat(plan["as_of"]) if plan.get("as_of") else injected_at
    resource, reports = drills.inject(entry=entry, scenario=scenario, agency=agency, now=as_of,
                                      scratch=Path(plan["scratch"]))
    for report in reports:
        get_run_logger().info("injected %s: %s", report["injector"], report["summary"])
    return {"resource": resource, "injections": reports, "injected_at": injected_at.isoformat(),
            "as_of": as_of.isoformat(),
            "dedup_key": drills.drill_dedup_key(plan["drill_id"], entry.id, resource)}


def emergency_request(plan: dict, injected: dict):
    """The type's own typed request for the injected fault, in drill mode, with the drill's key."""
    from ledgerguard.signals import request_for_signal

    signal = Signal(source="drill", emergency_type=plan["emergency_type"], resource=injected["resource"],
                    observed_at=datetime.fromisoformat(injected["as_of"]), dedup_key=injected["dedup_key"],
                    drill=True, summary=f"drill {plan['drill_id']}: {plan['scenario']}",
                    payload={"requested_by": plan["requested_by"]})
    request = request_for_signal(signal, requested_by=plan["requested_by"])
    if request is None:
        raise drills.DrillError(f"{plan['emergency_type']} has no flow to drill")
    return request


# --- the stand-in --------------------------------------------------------------------------------


def _incident_for(db_session, dedup_key: str) -> Incident | None:
    from sqlalchemy import select

    return db_session.scalars(select(Incident).where(Incident.dedup_key == dedup_key)
                              .order_by(Incident.opened_at.desc())
                              .execution_options(populate_existing=True)).first()


def _first_notified(runtime, incident_id: str) -> str | None:
    people = {p.id for p in runtime.contacts.people}
    with runtime.session(read_only=True) as db_session:
        for note in register.list_notifications(db_session=db_session, incident_id=incident_id):
            person = note.recipient.split(":", 1)[0]
            if note.stage == Stage.NOTIFY.value and note.status == "sent" and person in people:
                return person
    return None


@contextlib.contextmanager
def stand_in(plan: dict, injected: dict, *, enabled: bool) -> Iterator[list[dict]]:
    """While the drill's flow runs, a stand-in answers for the people: it acknowledges the drill
    incident as the first person notified, and approves a paused approval form as the first
    approver the form offers — the same calls the one-click link and the UI's Resume dialog make.
    Yields the answers given. Disabled, nothing is answered and real people must act."""
    given: list[dict] = []
    if not enabled:
        yield given
        return
    stop = threading.Event()
    runtime = get_runtime()
    tag = f"drill:{plan['drill_id']}"

    def act() -> None:
        acked: set[str] = set()
        answered: set[str] = set()
        while not stop.wait(0.5):
            try:
                _acknowledge(runtime, injected["dedup_key"], acked, given)
                _approve(tag, answered, given)
            except Exception:  # noqa: BLE001 — the run may have moved on meanwhile; look again
                continue

    thread = threading.Thread(target=contextvars.copy_context().run, args=(act,), daemon=True,
                              name=f"drill-stand-in-{plan['drill_id']}")
    thread.start()
    try:
        yield given
    finally:
        stop.set()
        thread.join(timeout=10)


def _acknowledge(runtime, dedup_key: str, acked: set[str], given: list[dict]) -> None:
    from ledgerguard.acknowledgement.service import IncidentNotOpen, acknowledge

    with runtime.session(read_only=True) as db_session:
        incident = _incident_for(db_session, dedup_key)
        if incident is None or incident.id in acked or incident.acknowledged_at is not None or not incident.is_open:
            return
        incident_id = incident.id
    person = _first_notified(runtime, incident_id)
    if person is None:  # not notified yet: a stand-in answers what reached someone
        return
    try:
        with runtime.session() as db_session:
            acknowledge(db_session=db_session, incident_id=incident_id, by=person, via="drill",
                        note="演练替身确认 / drill stand-in")
    except IncidentNotOpen:
        pass
    acked.add(incident_id)
    stop_escalation(incident_id=incident_id, message="acknowledged by the drill's stand-in")
    given.append({"kind": "ack", "incident_id": incident_id, "by": person})


def _approve(tag: str, answered: set[str], given: list[dict]) -> None:
    from prefect.flow_runs import resume_flow_run

    for run in runs_tagged(tag, states=("PAUSED",)):
        key = run.state.state_details.pause_key or ""
        if not key.startswith("approval-") or f"{run.id}:{key}" in answered:
            continue
        choices = form_choices(run, "approver")
        if not choices:
            continue
        resume_flow_run(run.id, run_input={"approver": choices[0], "decision": "approve",
                                           "reason": "演练替身审批 / drill stand-in approval"})
        answered.add(f"{run.id}:{key}")
        given.append({"kind": "approval", "flow_run_id": str(run.id), "key": key, "by": choices[0]})


@task(name="drill-wait-for-people", cache_policy=NO_CACHE)
def wait_for_people(plan: dict, injected: dict) -> dict:
    """A drill with real people gives them until the scenario's time limit to take the incident
    over and tick the manual steps (the flow itself waits for neither); a stand-in drill is
    measured at once — a stand-in never ticks a manual step nobody did."""
    runtime = get_runtime()
    deadline = datetime.fromisoformat(injected["injected_at"]) + timedelta(minutes=plan["time_limit_minutes"])
    while True:
        with runtime.session(read_only=True) as db_session:
            incident = _incident_for(db_session, injected["dedup_key"])
            done = incident is None or not incident.is_open or incident.status == IncidentStatus.RESOLVED.value
        if done or plan["stand_in"] or utcnow() >= deadline:
            return {"incident_id": incident.id if incident else None, "waited_until": utcnow().isoformat()}
        time.sleep(5)


def _notice_texts(runtime, incident_id: str) -> dict[str, str]:
    path = pipl57_notice_path(runtime.settings.reports_dir, incident_id)
    return {"notice_pipl57": path.read_text(encoding="utf-8")} if path.is_file() else {}


def _participants(runtime, incident_id: str | None, stand_in_used: bool) -> list[str]:
    """The people who took part for real: who acknowledged, approved or ticked a step themselves
    (a stand-in's answers make nobody a participant)."""
    if incident_id is None:
        return []
    from sqlalchemy import select

    from ledgerguard.register.models import ApprovalRecord, RunbookAction

    people = {p.id for p in runtime.contacts.people}
    found: set[str] = set()
    with runtime.session(read_only=True) as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        if incident.acknowledged_by and incident.acknowledged_via != "drill":
            found.add(incident.acknowledged_by)
        if not stand_in_used:
            found |= {a.decided_by for a in db_session.scalars(
                select(ApprovalRecord).where(ApprovalRecord.incident_id == incident_id)) if a.decided_by}
        for action in db_session.scalars(select(RunbookAction).where(RunbookAction.incident_id == incident_id)):
            done_by = (action.output or {}).get("done_by") if isinstance(action.output, dict) else None
            if done_by:
                found.add(str(done_by))
    return sorted(found & people)


@task(name="drill-score", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def score_drill(plan: dict, injected: dict, flow_state: dict, answers: list[dict]) -> DrillOutcome:
    """Measure the response from the register, score it with the weights of drills.yaml, prove
    production untouched, open an improvement item per shortfall, and end the drill incident."""
    runtime = get_runtime()
    entry = runtime.catalog.get(plan["emergency_type"])
    scenario = entry.scenario(plan["scenario"])
    policy = runtime.catalog.drills
    language = runtime.settings.language
    started_at = datetime.fromisoformat(injected["injected_at"])
    logger = get_run_logger()

    before = json.loads((Path(plan["root"]) / PRODUCTION_SUMS).read_text(encoding="utf-8"))
    after = drills.checksums(runtime.settings.agency_path)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    untouched = not changed
    if changed:
        logger.error("production agency files changed during the drill: %s", ", ".join(changed[:20]))

    with runtime.session(read_only=True) as db_session:
        incident = _incident_for(db_session, injected["dedup_key"])
        incident_id = incident.id if incident else None
        level = incident.level if incident else None
    needed: list[str] = []
    if incident_id and entry.templates.pipl57 and needs_pipl57_notice(incident_snapshot(runtime=runtime,
                                                                                         incident_id=incident_id)):
        needed.append(entry.templates.pipl57)
    with runtime.session(read_only=True) as db_session:
        measures = drills.measure(db_session=db_session, incident_id=incident_id, entry=entry, scenario=scenario,
                                  policy=policy, started_at=started_at, expected=plan["expected_level"],
                                  language=language, notices_needed=needed,
                                  notice_texts=_notice_texts(runtime, incident_id) if incident_id else {})
    value = drills.score(measures=measures, weights=policy.weights)
    passed = value >= policy.pass_mark and untouched
    error = None if untouched else "production data changed during the drill: " + ", ".join(changed[:20])
    if flow_state.get("error"):
        error = (error + "; " if error else "") + f"the {entry.flow} run ended {flow_state['error']}"

    owner = drills.improvement_owner(contacts=runtime.contacts, policy=policy)
    due = utcnow() + timedelta(days=policy.improvement_due_days)
    items: list[dict[str, Any]] = []
    name = entry.name.zh if language == "zh-CN" else entry.name.en
    with runtime.session() as db_session:
        for m in measures:
            if m.value is None or m.value >= 1:
                continue
            row, created = improvements.raise_item(
                db_session=db_session, source="drill", source_key=f"drill:{entry.id}:{scenario.id}:{m.name}",
                title=(f"演练发现：{name} — {MEASURE_LABELS['zh-CN'][m.name]}未达标" if language == "zh-CN"
                       else f"Drill finding: {name} — {MEASURE_LABELS['en'][m.name]} fell short"),
                detail=m.detail, owner=owner, due_at=due, incident_id=incident_id)
            items.append({"id": row.id, "title": row.title, "owner": row.owner, "due_at": row.due_at.isoformat(),
                          "measure": m.name, "new": created})
        participants = _participants(runtime, incident_id, stand_in_used=plan["stand_in"])
        record = drills.finish_drill(
            db_session=db_session, drill_id=plan["drill_id"], incident_id=incident_id,
            measures={m.name: m.to_dict() for m in measures}, score_value=value, passed=passed,
            participants=participants, level=level, error=error)
        if incident_id:
            register.append_timeline(
                db_session=db_session, incident_id=incident_id, stage=Stage.RECORD.value, kind="drill.scored",
                message=f"drill {plan['drill_id']} scored {value:.1f} (pass mark {policy.pass_mark:g})",
                data={"drill_id": plan["drill_id"], "score": value, "passed": passed},
                flow_run_id=str(flow_run.id) if flow_run.id else None)
        started = record.started_at
    if incident_id:
        _end_drill_incident(runtime, incident_id, plan["drill_id"])
    return DrillOutcome(drill_id=plan["drill_id"], emergency_type=entry.id, scenario=scenario.id,
                        incident_id=incident_id, level=level, expected_level=plan["expected_level"], score=value,
                        pass_mark=policy.pass_mark, passed=passed,
                        measures={m.name: m.to_dict() for m in measures}, improvements=items,
                        production_untouched=untouched, started_at=started, error=error)


def _end_drill_incident(runtime, incident_id: str, drill_id: str) -> None:
    """A drill incident is closed when its drill is scored: no escalation or checklist of an
    exercise keeps paging people afterwards."""
    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        if incident.status != IncidentStatus.CLOSED.value:
            register.set_status(db_session=db_session, incident_id=incident_id, status=IncidentStatus.CLOSED,
                                actor="ledgerguard", stage=Stage.RECORD, note=f"drill {drill_id} ended")
    try:
        stop_escalation(incident_id=incident_id, message=f"drill {drill_id} ended")
        close_runs(tags=["checklist", f"incident:{incident_id}"], message=f"drill {drill_id} ended")
    except Exception as exc:  # noqa: BLE001 — the register already says closed; a later round sees that
        get_run_logger().warning("could not end the drill's waiting runs: %s", exc)


MEASURE_LABELS = {
    "zh-CN": {"detected": "检测", "level_matched": "定级准确", "notified": "首次通知及时", "acknowledged": "确认接手及时",
              "recovered": "恢复", "rto_met": "RTO达标", "rpo_met": "RPO达标", "obligations_complete": "法定义务完整",
              "notices_complete": "告知内容完整", "checklist_completion": "处置清单完成度"},
    "en": {"detected": "Detection", "level_matched": "Level matched", "notified": "First notification in time",
           "acknowledged": "Acknowledged in time", "recovered": "Recovery", "rto_met": "RTO met", "rpo_met": "RPO met",
           "obligations_complete": "Obligations complete", "notices_complete": "Notice contents complete",
           "checklist_completion": "Checklist completion"},
}


@task(name="drill-report", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def send_drill_report(outcome: DrillOutcome) -> DrillOutcome:
    """The evaluation report: strengths, gaps, improvement items; an HTML email to the management
    list and the drill recipients (once each), a file, and a Prefect artifact."""
    runtime = get_runtime()
    entry = runtime.catalog.get(outcome.emergency_type)
    scenario = entry.scenario(outcome.scenario)
    language = runtime.settings.language
    labels = MEASURE_LABELS[language]
    weights = runtime.catalog.drills.weights
    rows = [{"name": name, "label": labels.get(name, name), "weight": weights.get(name, 0), **m}
            for name, m in outcome.measures.items()]
    context = {
        "agency": {"name": runtime.agency.config.name},
        "drill": outcome.model_dump(mode="json"),
        "entry": {"id": entry.id, "name": entry.name.zh if language == "zh-CN" else entry.name.en},
        "scenario": {"id": scenario.id, "description": scenario.description.zh if language == "zh-CN"
                     else scenario.description.en},
        "measures": rows,
        "strengths": [r for r in rows if r["value"] is not None and r["value"] >= 1],
        "gaps": [r for r in rows if r["value"] is not None and r["value"] < 1],
        "not_applicable": [r for r in rows if r["value"] is None],
        "improvements": outcome.improvements,
        "run": {"url": ui_run_url(str(flow_run.id)) if flow_run.id else None},
    }
    message = render_message(name="drill_report", language=language, context=context,
                             templates_dir=runtime.settings.templates_dir)
    folder = runtime.settings.reports_dir / "drills" / outcome.drill_id
    path = write_text(folder / f"drill-{outcome.drill_id}.html", message.html or message.text)
    write_text(folder / f"drill-{outcome.drill_id}.md", message.markdown or message.text)
    create_markdown_artifact(key=f"drill-{outcome.drill_id}", markdown=message.markdown or message.text,
                             description=f"Drill evaluation: {entry.id}/{scenario.id}, score {outcome.score}")
    create_table_artifact(key=f"drill-measures-{outcome.drill_id}",
                          table=[{"measure": r["label"], "value": r["value"], "weight": r["weight"],
                                  "detail": r["detail"]} for r in rows],
                          description=f"Drill measures of {outcome.drill_id}")
    failed: list[str] = []
    seen: set[str] = set()
    for recipient in management_recipients(runtime.contacts) + drill_recipients(runtime.contacts):
        if recipient.address in seen:
            continue
        seen.add(recipient.address)
        result = send_once(runtime=runtime, incident_id=None, stage=Stage.RECORD,
                           step=f"drill-report:{outcome.drill_id}", recipient=recipient, message=message,
                           template="drill_report", flow_run_id=str(flow_run.id) if flow_run.id else None)
        if result.status == "failed":
            failed.append(f"{recipient.address}: {result.error}")
    with runtime.session() as db_session:
        drills.get_drill(db_session=db_session, drill_id=outcome.drill_id).report_path = str(path)
    if failed:
        raise RuntimeError("drill report delivery failed: " + "; ".join(failed))
    return outcome.model_copy(update={"report_path": str(path)})
