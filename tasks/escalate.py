"""Escalation and checklist rounds: what each round does before it waits for a person.

A round run is one step of a wait: it closes the form of the round before it (nobody answered
in time), does its work (deliver what quiet hours held back, notify the next roles), and returns
the plan for its own form and timer. Replaying a round after its form was answered does the same
work again and changes nothing: every notification has its key, every timeline entry its guard.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ledgerguard.acknowledgement.service import IncidentNotOpen, acknowledge
from ledgerguard.channels.contacts import management_recipients
from ledgerguard.channels.messaging import render_message
from ledgerguard.escalation.service import Round, round_at
from ledgerguard.models import IncidentStatus, Stage, utcnow
from ledgerguard.register import service as register
from ledgerguard.response.notifying import ack_personaliser, deliver_due, route, send_once
from ledgerguard.response.reporting import incident_snapshot, report_context
from ledgerguard.response.runbook import decide_status, open_manual_steps, tick_manual_step
from ledgerguard.runtime import get_runtime
from tasks.notify import escalation_key, escalation_tags
from tasks.people import (
    CHECKLIST_DEPLOYMENT,
    ESCALATION_DEPLOYMENT,
    bring_forward,
    close_runs,
    start_round,
    stop_escalation,
    ui_run_url,
)


def _run_id() -> str | None:
    return str(flow_run.id) if flow_run.id else None


def _noted(db_session, incident_id: str, kind: str, **match) -> bool:
    """Whether the incident's timeline already has an entry of ``kind`` whose data match."""
    return any(e.kind == kind and all((e.data or {}).get(k) == v for k, v in match.items())
               for e in register.get_timeline(db_session=db_session, incident_id=incident_id))


def _frozen_rounds(incident, level: int) -> list[Round]:
    chains = (incident.frozen_escalation or {}).get("chains") or {}
    chain = chains.get(str(int(level)))
    return [Round.from_dict(r) for r in chain["rounds"]] if chain else []


def _people() -> list[str]:
    return [p.id for p in get_runtime().contacts.people]


def _staff_message(runtime, entry, incident_id, context, template):
    message = render_message(name=template, language=runtime.settings.language, context=context,
                             templates_dir=runtime.settings.templates_dir)
    return message, ack_personaliser(runtime=runtime, incident_id=incident_id, template=template, context=context)


@task(name="escalation-round", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def escalation_round(incident_id: str, level: int, round_index: int) -> dict:
    """Do round ``round_index`` of the incident's frozen chain for ``level``.

    Returns ``{"stop": reason}`` when the escalation is over (acknowledged, incident closed, a
    more severe level's chain took over, or the chain exhausted: the miss is recorded and the
    management list told), else the round's wait and who may fill in the form.
    """
    runtime = get_runtime()
    logger = get_run_logger()
    run_id = _run_id()
    now = utcnow()
    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        entry = runtime.catalog.get(incident.emergency_type)
        rounds = _frozen_rounds(incident, level)
        current_level = (incident.frozen_escalation or {}).get("current_level")
        stop = None
        if not IncidentStatus(incident.status).is_open:
            stop = f"incident is {incident.status}"
        elif incident.acknowledged_at is not None:
            stop = f"acknowledged by {incident.acknowledged_by} via {incident.acknowledged_via}"
        elif current_level is not None and int(current_level) != int(level):
            stop = f"the level {current_level} chain took over"
        elif not rounds:
            stop = f"no chain frozen for level {level}"
        if run_id:
            register.link_flow_run(db_session=db_session, incident_id=incident_id, flow_run_id=run_id,
                                   flow_name="escalation")

    snapshot = incident_snapshot(runtime=runtime, incident_id=incident_id)
    context = report_context(runtime=runtime, entry=entry, snapshot=snapshot, run={"flow_run_id": run_id})
    context["ack"] = {"form_url": ui_run_url(run_id) if not stop else None}
    if IncidentStatus(incident.status).is_open:
        # What quiet hours held back goes out first (even when someone took over meanwhile:
        # the others still hear of it), with this round's form linked.
        deliver_due(runtime=runtime, incident_id=incident_id, context={**context, "escalation": {"round": 0}},
                    now=now, flow_run_id=run_id)

    previous = round_at(rounds, round_index - 1)
    closed = close_runs(tags=["escalation", f"incident:{incident_id}"], states=("PAUSED",), exclude={run_id or ""},
                        message=(f"no acknowledgement within {previous.wait_minutes:g} min; round {round_index} "
                                 "took over" if previous else "superseded"))
    if stop:
        with runtime.session() as db_session:
            if not _noted(db_session, incident_id, "escalation.stopped", level=int(level)):
                register.append_timeline(
                    db_session=db_session, incident_id=incident_id, stage=Stage.NOTIFY.value,
                    kind="escalation.stopped", flow_run_id=run_id, data={"level": int(level), "round": round_index},
                    message=f"escalation for level {level} stops at round {round_index}: {stop}")
        logger.info("escalation of %s stops: %s", incident_id, stop)
        return {"stop": stop}

    this = round_at(rounds, round_index)
    if this is None:
        return _exhausted(runtime=runtime, entry=entry, incident_id=incident_id, level=level, rounds=rounds,
                          context=context, run_id=run_id)
    if round_index > 0:
        context["escalation"] = {"round": round_index, "step": this.step, "repeat": this.repeat,
                                 "rounds": len(rounds), "previous_wait": previous.wait_minutes,
                                 "wait_minutes": this.wait_minutes}
        routing = route(runtime=runtime, entry=entry, level=level, affected_clients=snapshot["incident"]
                        ["affected_clients"] or [], roles=this.roles)
        message, personalise = _staff_message(runtime, entry, incident_id, context, entry.templates.staff)
        outcomes = [send_once(runtime=runtime, incident_id=incident_id, stage=Stage.NOTIFY,
                              step=f"escalation:L{level}:{round_index}", recipient=r, message=message,
                              template=entry.templates.staff, flow_run_id=run_id, personalise=personalise)
                    for r in routing.recipients]
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            raise RuntimeError("escalation deliveries failed: " + "; ".join(f"{o.recipient}: {o.error}" for o in failed))
    with runtime.session() as db_session:
        if not _noted(db_session, incident_id, "escalation.round", level=int(level), round=round_index):
            register.append_timeline(
                db_session=db_session, incident_id=incident_id, stage=Stage.NOTIFY.value, kind="escalation.round",
                flow_run_id=run_id, data={**this.as_dict(), "level": int(level), "closed_forms": closed},
                message=(f"escalation round {round_index} (step {this.step}, {this.repeat}/"
                         f"{sum(1 for r in rounds if r.step == this.step)}): "
                         + ("first notification out; " if round_index == 0 else f"notified {', '.join(this.roles)}; ")
                         + f"waiting {this.wait_minutes:g} min for an acknowledgement"))
    return {"stop": None, "wait_minutes": this.wait_minutes, "people": _people()}


def _exhausted(*, runtime, entry, incident_id, level, rounds, context, run_id) -> dict:
    """Nobody acknowledged through the whole chain: record the miss, tell the management list."""
    context["escalation"] = {"exhausted": True, "rounds": len(rounds)}
    message, personalise = _staff_message(runtime, entry, incident_id, context, entry.templates.staff)
    for recipient in management_recipients(runtime.contacts):
        send_once(runtime=runtime, incident_id=incident_id, stage=Stage.NOTIFY, step=f"escalation:L{level}:exhausted",
                  recipient=recipient, message=message, template=entry.templates.staff, flow_run_id=run_id,
                  personalise=personalise)
    with runtime.session() as db_session:
        if not _noted(db_session, incident_id, "escalation.exhausted", level=int(level)):
            total = sum(r.wait_minutes for r in rounds)
            register.append_timeline(
                db_session=db_session, incident_id=incident_id, stage=Stage.NOTIFY.value, kind="escalation.exhausted",
                flow_run_id=run_id, data={"level": int(level), "rounds": len(rounds), "minutes": total},
                message=f"missed: nobody acknowledged after {len(rounds)} round(s) over {total:g} min; "
                        "the management list is told")
    return {"stop": "chain exhausted"}


@task(name="schedule-round", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def schedule_escalation_round(incident_id: str, level: int, round_index: int, wait_minutes: float) -> str | None:
    """The next round, scheduled in Prefect for when this round's wait is over (once)."""
    runtime = get_runtime()
    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        tags = escalation_tags(incident_id=incident_id, emergency_type=incident.emergency_type, drill=incident.drill)
    return start_round(deployment=ESCALATION_DEPLOYMENT,
                       parameters={"incident_id": incident_id, "level": level, "round": round_index},
                       at=utcnow() + timedelta(minutes=wait_minutes), key=escalation_key(incident_id, level, round_index),
                       tags=tags, logger=get_run_logger())


@task(name="record-acknowledgement", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def record_form_acknowledgement(incident_id: str, responder: str, note: str) -> dict:
    """The responder took the incident over in the Prefect UI: record it, end the chain."""
    runtime = get_runtime()
    run_id = _run_id()
    try:
        with runtime.session() as db_session:
            result = acknowledge(db_session=db_session, incident_id=incident_id, by=responder, via="ui", note=note,
                                 flow_run_id=run_id)
    except IncidentNotOpen as exc:  # resolved while the form was open: nothing to take over
        stop_escalation(incident_id=incident_id, exclude={run_id or ""}, message=str(exc))
        return {"incident_id": incident_id, "first": False, "status": "not_open", "reason": str(exc)}
    stop_escalation(incident_id=incident_id, exclude={run_id or ""},
                    message=f"acknowledged by {result.acknowledged_by} via {result.acknowledged_via}")
    get_run_logger().warning("incident %s acknowledged by %s via the UI", incident_id, responder)
    return result.as_dict()


@task(name="start-missing-escalations", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def start_missing_escalations() -> dict:
    """The safety net: every open incident whose escalation never started (its run happened
    where the `escalation` deployment was not served, e.g. `ledgerguard run` or the demo) gets
    its round 0 now — which also delivers what quiet hours held back. Nothing else is touched:
    a chain that started is carried by its own rounds."""
    from tasks.notify import start_escalation_for

    runtime = get_runtime()
    now = utcnow()
    started = []
    with runtime.session() as db_session:
        candidates = []
        for incident in register.list_incidents(db_session=db_session, open_only=True):
            level = (incident.frozen_escalation or {}).get("current_level")
            if level is None or not IncidentStatus(incident.status).is_open:
                continue
            if _noted(db_session, incident.id, "escalation.started", level=int(level)):
                continue
            due = register.list_due_notifications(db_session=db_session, now=now + timedelta(days=60),
                                                  incident_id=incident.id)
            if incident.acknowledged_at is not None and not due:
                continue
            at = max((n.due_at for n in due), default=None)
            candidates.append((incident.id, incident.emergency_type, int(level), at if at and at > now else None,
                               incident.drill))
    for incident_id, emergency_type, level, at, drill in candidates:
        run = start_escalation_for(runtime=runtime, entry=runtime.catalog.get(emergency_type), incident_id=incident_id,
                                   level=level, at=at, drill=drill, run_id=_run_id(), logger=get_run_logger())
        if run:
            started.append(incident_id)
    get_run_logger().info("escalations started for %d incident(s) that had none", len(started))
    return {"checked": len(candidates), "started": started}


# --- checklist -----------------------------------------------------------------------------------


def checklist_tags(*, incident_id: str, emergency_type: str, drill: bool) -> list[str]:
    return ["checklist", f"incident:{incident_id}", f"emergency:{emergency_type}", *(["drill"] if drill else [])]


def checklist_key(incident_id: str, round_index: int) -> str:
    return f"checklist:{incident_id}:{round_index}"


def start_checklist(*, runtime, incident_id: str, run_id: str | None, logger) -> str | None:
    """Round 0 of the incident's checklist (once): the open manual steps as a form to tick."""
    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        tags = checklist_tags(incident_id=incident_id, emergency_type=incident.emergency_type, drill=incident.drill)
    checklist_run = start_round(deployment=CHECKLIST_DEPLOYMENT, parameters={"incident_id": incident_id, "round": 0},
                                at=None, key=checklist_key(incident_id, 0), tags=tags, logger=logger)
    with runtime.session() as db_session:
        if checklist_run and not _noted(db_session, incident_id, "checklist.started", flow_run_id=checklist_run):
            register.link_flow_run(db_session=db_session, incident_id=incident_id, flow_run_id=checklist_run,
                                   flow_name="checklist")
            register.append_timeline(
                db_session=db_session, incident_id=incident_id, stage=Stage.REMEDIATE.value, kind="checklist.started",
                flow_run_id=run_id, data={"flow_run_id": checklist_run},
                message=f"manual steps are a checklist to tick in the Prefect UI: {ui_run_url(checklist_run)}")
    return checklist_run


def checklist_deadline(incident, rubric):
    """Manual steps are due by the level's resolve SLA, counted from the incident's opening."""
    hours = (incident.assessment or {}).get("sla", {}).get("resolve_hours") or rubric.sla[int(incident.level or 4)].resolve_hours
    return incident.opened_at + timedelta(hours=float(hours))


@task(name="checklist-round", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def checklist_round(incident_id: str, round_index: int) -> dict:
    """Close the previous form; stop when nothing is open, or record the miss when overdue."""
    runtime = get_runtime()
    run_id = _run_id()
    language = runtime.settings.language
    now = utcnow()
    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        entry = runtime.catalog.get(incident.emergency_type)
        steps = open_manual_steps(db_session=db_session, entry=entry, incident_id=incident_id)
        deadline = checklist_deadline(incident, runtime.catalog.rubric)
        is_open = IncidentStatus(incident.status).is_open
        if run_id:
            register.link_flow_run(db_session=db_session, incident_id=incident_id, flow_run_id=run_id,
                                   flow_name="checklist")
    close_runs(tags=["checklist", f"incident:{incident_id}"], states=("PAUSED",), exclude={run_id or ""},
               message=f"round {round_index} took over")
    if not steps or not is_open:
        return {"stop": "nothing left to tick" if is_open else f"incident is {incident.status}"}
    if now >= deadline:
        with runtime.session() as db_session:
            if not _noted(db_session, incident_id, "checklist.overdue"):
                register.append_timeline(
                    db_session=db_session, incident_id=incident_id, stage=Stage.REMEDIATE.value,
                    kind="checklist.overdue", flow_run_id=run_id, data={"steps": [s.id for s in steps]},
                    message="missed: manual step(s) still open at the resolve deadline "
                            f"{deadline.isoformat(timespec='minutes')}: " + ", ".join(s.title.get(language) for s in steps))
        _page_duty_lead(runtime=runtime, entry=entry, incident_id=incident_id, run_id=run_id,
                        step="checklist:overdue")
        return {"stop": "overdue"}
    return {"stop": None, "deadline": deadline.isoformat(), "people": _people(),
            "steps": [(s.id, s.title.get(language)) for s in steps]}


def _page_duty_lead(*, runtime, entry, incident_id, run_id, step) -> None:
    """The duty lead on call (the management list when there is none) hears of a missed wait."""
    with runtime.session() as db_session:
        level = register.get_incident(db_session=db_session, incident_id=incident_id).level or 4
    routing = route(runtime=runtime, entry=entry, level=level, affected_clients=[], roles=["duty_lead"])
    recipients = routing.recipients or management_recipients(runtime.contacts)
    snapshot = incident_snapshot(runtime=runtime, incident_id=incident_id)
    context = report_context(runtime=runtime, entry=entry, snapshot=snapshot, run={"flow_run_id": run_id})
    message, personalise = _staff_message(runtime, entry, incident_id, context, entry.templates.staff)
    for recipient in recipients:
        send_once(runtime=runtime, incident_id=incident_id, stage=Stage.NOTIFY, step=step, recipient=recipient,
                  message=message, template=entry.templates.staff, flow_run_id=run_id, personalise=personalise)


@task(name="schedule-checklist-round", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def schedule_checklist_round(incident_id: str, round_index: int, at_iso: str) -> str | None:
    from datetime import datetime

    runtime = get_runtime()
    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        tags = checklist_tags(incident_id=incident_id, emergency_type=incident.emergency_type, drill=incident.drill)
    return start_round(deployment=CHECKLIST_DEPLOYMENT, parameters={"incident_id": incident_id, "round": round_index},
                       at=datetime.fromisoformat(at_iso), key=checklist_key(incident_id, round_index), tags=tags,
                       logger=get_run_logger())


@task(name="record-checklist", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def record_checklist(incident_id: str, answer: dict, next_round_run: str | None) -> dict:
    """Tick what the responder did; open steps get a new form at once, a finished list ends it
    (and resolves the incident when the rest of the runbook is done)."""
    from tasks.record import render_for, send_report

    runtime = get_runtime()
    run_id = _run_id()
    responder, note = answer.get("responder", ""), answer.get("note", "")
    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        entry = runtime.catalog.get(incident.emergency_type)
        ticked = [s.id for s in open_manual_steps(db_session=db_session, entry=entry, incident_id=incident_id)
                  if answer.get(s.id) is True
                  and tick_manual_step(db_session=db_session, incident_id=incident_id, step=s, by=responder, via="ui",
                                       note=note, language=runtime.settings.language, flow_run_id=run_id)]
        remaining = [s.id for s in open_manual_steps(db_session=db_session, entry=entry, incident_id=incident_id)]
        status = None
        if not remaining and IncidentStatus(incident.status).is_open:
            status = decide_status(steps=register.list_actions(db_session=db_session, incident_id=incident_id),
                                   remediated=True)
            if status is IncidentStatus.RESOLVED:
                register.set_status(db_session=db_session, incident_id=incident_id, status=status, actor=responder,
                                    note="every runbook step is done", flow_run_id=run_id)
        if not ticked:
            register.append_timeline(db_session=db_session, incident_id=incident_id, stage=Stage.REMEDIATE.value,
                                     kind="checklist.answered", actor=responder, flow_run_id=run_id,
                                     message=f"{responder} answered the checklist without ticking a step"
                                             + (f": {note}" if note else ""))
    if remaining and next_round_run:
        bring_forward(next_round_run, message=f"{len(ticked)} step(s) ticked by {responder}; a new form for the rest")
    elif next_round_run:
        close_runs(tags=["checklist", f"incident:{incident_id}"], states=("SCHEDULED",), exclude={run_id or ""},
                   message="every manual step is done")
    if status is IncidentStatus.RESOLVED:
        stop_escalation(incident_id=incident_id, message="every runbook step is done")
        snapshot = incident_snapshot(runtime=runtime, incident_id=incident_id)
        context = report_context(runtime=runtime, entry=entry, snapshot=snapshot,
                                 run={"flow_run_id": run_id, "requested_by": responder, "source": "checklist"})
        send_report(runtime=runtime, entry=entry, incident_id=incident_id,
                    step=f"report:resolved:level{snapshot['incident']['level']}",
                    message=render_for(runtime, entry.templates.report, context), attachments=[], run_id=run_id)
    return {"ticked": ticked, "remaining": remaining, "status": status.value if status else None}
