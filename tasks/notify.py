"""Notify stage: tell the people the level calls for, once each, and start the escalation."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import DEFAULT
from prefect.runtime import flow_run

from ledgerguard.channels.messaging import render_message
from ledgerguard.escalation.service import current_chain
from ledgerguard.models import Stage, idempotency_key, utcnow
from ledgerguard.register import service as register
from ledgerguard.response.models import Classified
from ledgerguard.response.notifying import ack_personaliser, recipient_label, route, send_once
from ledgerguard.response.reporting import incident_snapshot, report_context
from ledgerguard.runtime import get_runtime
from tasks.people import ESCALATION_DEPLOYMENT, start_round, ui_run_url


class NotificationsFailed(RuntimeError):
    """Some deliveries failed; Prefect retries the task and the register skips those already sent."""


def escalation_tags(*, incident_id: str, emergency_type: str, drill: bool) -> list[str]:
    return ["escalation", f"incident:{incident_id}", f"emergency:{emergency_type}", *(["drill"] if drill else [])]


def escalation_key(incident_id: str, level: int, round_index: int) -> str:
    return f"escalation:{incident_id}:L{level}:{round_index}"


@task(name="notify", retries=2, retry_delay_seconds=[2, 10], cache_policy=DEFAULT, persist_result=True)
def notify_responders(emergency_type: str, classified: Classified) -> list[str]:
    runtime = get_runtime()
    entry = runtime.catalog.get(emergency_type)
    run_id = str(flow_run.id) if flow_run.id else None
    logger = get_run_logger()
    now = utcnow()

    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=classified.incident_id)
        level, rounds = current_chain(incident)
        acknowledged, drill = incident.acknowledged_at is not None, incident.drill
    first = rounds[0] if rounds and level == classified.level else None
    routing = route(runtime=runtime, entry=entry, level=classified.level, affected_clients=classified.affected_clients,
                    roles=first.roles if first else None)
    if routing.unresolved_roles:
        with runtime.session() as db_session:
            register.append_timeline(
                db_session=db_session, incident_id=classified.incident_id, stage=Stage.NOTIFY.value,
                kind="routing.unresolved",
                message="no one to notify for role(s): " + ", ".join(routing.unresolved_roles),
                flow_run_id=run_id)
        logger.error("no recipients for roles %s", routing.unresolved_roles)

    # Quiet hours: a 四级 at night or on a holiday waits for the next working morning.
    due = {recipient_label(r): _due_at(runtime, classified.level, now) for r in routing.recipients}
    starts_at = max([d for d in due.values() if d > now], default=None)
    escalation_run = None
    if first is not None and not acknowledged:
        escalation_run = start_escalation_for(runtime=runtime, entry=entry, incident_id=classified.incident_id,
                                           level=level, at=starts_at, drill=drill, run_id=run_id, logger=logger)

    snapshot = incident_snapshot(runtime=runtime, incident_id=classified.incident_id)
    context = report_context(runtime=runtime, entry=entry, snapshot=snapshot, run={"flow_run_id": run_id})
    context["ack"] = {"form_url": ui_run_url(escalation_run)}
    context["escalation"] = {"round": 0, "rounds": len(rounds), "wait_minutes": first.wait_minutes if first else None}
    template = entry.templates.staff
    message = render_message(name=template, language=runtime.settings.language, context=context,
                             templates_dir=runtime.settings.templates_dir)
    personalise = ack_personaliser(runtime=runtime, incident_id=classified.incident_id, template=template,
                                   context=context)

    sent: list[str] = []
    failed: list[str] = []
    step = f"level{classified.level}"
    for recipient in routing.recipients:
        label = f"{recipient.name} <{recipient.channel}>"
        due_at = due[recipient_label(recipient)]
        if due_at > now:
            _defer(runtime=runtime, incident_id=classified.incident_id, step=step, recipient=recipient,
                   template=template, subject=message.subject, due_at=due_at, run_id=run_id)
            sent.append(f"{label} (deferred to {due_at.isoformat(timespec='minutes')}: quiet hours)")
            continue
        outcome = send_once(runtime=runtime, incident_id=classified.incident_id, stage=Stage.NOTIFY, step=step,
                            recipient=recipient, message=message, template=template, flow_run_id=run_id,
                            personalise=personalise)
        (failed if outcome.status == "failed" else sent).append(
            label + (" (already sent)" if outcome.status == "skipped" else ""))
        if outcome.status == "failed":
            logger.warning("delivery to %s via %s failed: %s", recipient.person_id, recipient.channel,
                           outcome.error)
    if failed:
        raise NotificationsFailed(f"{len(failed)} of {len(routing.recipients)} deliveries failed: "
                                  + ", ".join(failed))
    logger.info("notified %d recipient(s)", len(sent))
    return sent


def _due_at(runtime, level: int, now):
    from ledgerguard.oncall.service import delivery_time

    roster = runtime.roster
    return now if roster is None else delivery_time(roster=roster, level=level, at=now).astimezone(now.tzinfo)


def _defer(*, runtime, incident_id, step, recipient, template, subject, due_at, run_id) -> None:
    label = recipient_label(recipient)
    key = idempotency_key(incident_id=incident_id, stage=Stage.NOTIFY.value, recipient=label, step=step)
    with runtime.session() as db_session:
        row = register.defer_notification(
            db_session=db_session, key=key, incident_id=incident_id, stage=Stage.NOTIFY.value, recipient=label,
            channel=recipient.channel, step=step, template=template, subject=subject, due_at=due_at,
            flow_run_id=run_id)
        if row is not None and row.status == "deferred" and row.flow_run_id == run_id:
            register.append_timeline(
                db_session=db_session, incident_id=incident_id, stage=Stage.NOTIFY.value, kind="notification.deferred",
                message=f"{template} → {recipient.name} ({recipient.channel}) waits for the end of quiet hours: "
                        f"{due_at.isoformat(timespec='minutes')}",
                data={"recipient": recipient.person_id, "channel": recipient.channel, "step": step, "key": key,
                      "due_at": due_at.isoformat()}, flow_run_id=run_id)


def start_escalation_for(*, runtime, entry, incident_id, level, at, drill, run_id, logger) -> str | None:
    """Create round 0 of the incident's escalation (once): it holds the acknowledgement form,
    delivers what quiet hours held back, and times the next round."""
    escalation_run = start_round(
        deployment=ESCALATION_DEPLOYMENT, parameters={"incident_id": incident_id, "level": level, "round": 0},
        at=at, key=escalation_key(incident_id, level, 0),
        tags=escalation_tags(incident_id=incident_id, emergency_type=entry.id, drill=drill), logger=logger)
    with runtime.session() as db_session:
        timeline = register.get_timeline(db_session=db_session, incident_id=incident_id)
        if escalation_run is None:
            if not any(e.kind == "escalation.not_started" for e in timeline):
                register.append_timeline(
                    db_session=db_session, incident_id=incident_id, stage=Stage.NOTIFY.value,
                    kind="escalation.not_started", flow_run_id=run_id,
                    message=f"escalation not started: deployment {ESCALATION_DEPLOYMENT} is not served here "
                            "(run `ledgerguard up` or `ledgerguard serve`); acknowledge with `ledgerguard ack`")
        elif not any(e.kind == "escalation.started" and (e.data or {}).get("flow_run_id") == escalation_run
                     for e in timeline):
            register.link_flow_run(db_session=db_session, incident_id=incident_id, flow_run_id=escalation_run,
                                   flow_name="escalation")
            register.append_timeline(
                db_session=db_session, incident_id=incident_id, stage=Stage.NOTIFY.value, kind="escalation.started",
                flow_run_id=run_id, data={"flow_run_id": escalation_run, "level": level,
                                          "at": at.isoformat() if at else None},
                message=f"escalation for level {level} started (run {escalation_run})"
                        + (f", from {at.isoformat(timespec='minutes')} after quiet hours" if at else ""))
    return escalation_run
