"""Watchdog tasks: page the duty lead for a failed emergency run; record a resolve from monitoring."""

from __future__ import annotations

from typing import Any

from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ledgerguard.models import IncidentStatus, Stage
from ledgerguard.response.models import BackupFailureRequest, LedgerLossRequest, ResponseRequest
from ledgerguard.runtime import get_runtime
from tasks.people import ui_run_url

PAGE_TEMPLATE = "page_watchdog"
# Flow name → the typed request its ``request`` parameter holds (to open an incident for a run
# that failed before classify could).
REQUEST_MODELS: dict[str, type] = {
    "ledger-loss": LedgerLossRequest, "backup-failure": BackupFailureRequest, "respond": ResponseRequest,
}


def _root_run(client, run) -> Any:
    """Follow parent task runs up to the emergency flow run that started it all."""
    seen = 0
    while run.parent_task_run_id and seen < 10:
        parent_task = client.read_task_run(run.parent_task_run_id)
        run = client.read_flow_run(parent_task.flow_run_id)
        seen += 1
    return run


def _incident_from_tags(tags) -> str | None:
    return next((t.split(":", 1)[1] for t in tags if t.startswith("incident:")), None)


@task(name="page-duty-lead", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def page_for_failed_run(failed_run_id: str, state: str) -> dict:
    from ledgerguard.channels.contacts import management_recipients, resolve_recipients
    from ledgerguard.response.notifying import on_call_now
    from ledgerguard.channels.messaging import render_message
    from ledgerguard.register import service as register
    from ledgerguard.response.notifying import ack_personaliser, send_once

    runtime = get_runtime()
    logger = get_run_logger()
    my_run_id = str(flow_run.id) if flow_run.id else None
    with get_client(sync_client=True) as client:
        failed = client.read_flow_run(failed_run_id)
        root = _root_run(client, failed)
        flow_name = client.read_flow(root.flow_id).name
    root_id = str(root.id)
    tags = set(failed.tags) | set(root.tags)
    drill = "drill" in tags
    state_name = root.state.name if root.state else state
    state_message = (failed.state.message if failed.state else "") or (root.state.message if root.state else "")

    incident_id = _incident_from_tags(root.tags) or _incident_from_tags(failed.tags)
    opened_here = False
    with runtime.session() as db_session:
        if incident_id is None:
            model = REQUEST_MODELS.get(flow_name)
            request_json = (root.parameters or {}).get("request")
            if model is not None and request_json:
                request = model.model_validate(request_json)
                request = request if isinstance(request, ResponseRequest) else request.to_request()
                signal = request.to_signal().model_copy(update={"source": "watchdog"})
                entry = runtime.catalog.get(request.emergency_type)
                incident, opened_here = register.open_or_join_incident(
                    db_session=db_session, signal=signal, title=f"{entry.name.get(runtime.settings.language)}: "
                    f"{request.resource}", flow_run_id=root_id, flow_name=flow_name, actor="watchdog")
                incident_id = incident.id
        if incident_id is not None:
            register.append_timeline(
                db_session=db_session, incident_id=incident_id, stage=Stage.NOTIFY.value,
                kind="watchdog.run_failed",
                message=(f"flow run {root.name} ({flow_name}) is {state_name}"
                         + (f": {state_message}" if state_message else "")
                         + " — the duty lead is paged; the incident stays open for a person"),
                actor="watchdog", data={"flow_run_id": root_id, "failed_run_id": str(failed.id),
                                        "state": state_name},
                flow_run_id=my_run_id)
            incident = register.get_incident(db_session=db_session, incident_id=incident_id)
            incident_view = {"id": incident.id, "title": incident.title, "status": incident.status,
                             "level": incident.level, "resource": incident.resource, "drill": incident.drill}
        else:
            incident_view = None

    # the duty lead on call now (the roster's rotation), else everyone holding the role
    routing = resolve_recipients(contacts=runtime.contacts, roles=["duty_lead"],
                                 on_call=on_call_now(runtime=runtime, roles=["duty_lead"]))
    recipients = [r for r in routing.recipients if r.channel == "email"] or routing.recipients
    if not recipients:
        logger.error("no duty lead in contacts; paging the management list instead")
        recipients = management_recipients(runtime.contacts)
    try:
        agency_name = runtime.agency.config.name
    except Exception:  # noqa: BLE001 — the page must go out even when the agency file is broken
        agency_name = ""
    context = {
        "agency": {"name": agency_name},
        "ack": {},
        "incident": incident_view,
        "run": {"id": root_id, "name": root.name, "flow": flow_name, "state": state_name,
                "message": state_message, "url": ui_run_url(root_id), "drill": drill,
                "failed_run_id": str(failed.id), "tags": sorted(tags)},
    }
    message = render_message(name=PAGE_TEMPLATE, language=runtime.settings.language, context=context,
                             templates_dir=runtime.settings.templates_dir)
    personalise = ack_personaliser(runtime=runtime, incident_id=incident_id, template=PAGE_TEMPLATE, context=context)
    outcomes = [send_once(runtime=runtime, incident_id=incident_id, stage=Stage.NOTIFY,
                          step=f"watchdog:{root_id}", recipient=r, message=message,
                          template=PAGE_TEMPLATE, flow_run_id=my_run_id, personalise=personalise) for r in recipients]
    failures = [o for o in outcomes if o.status == "failed"]
    if failures:
        raise RuntimeError("paging failed: " + "; ".join(f"{o.recipient}: {o.error}" for o in failures))
    sent = [o.recipient for o in outcomes if o.status == "sent"]
    logger.warning("run %s (%s) %s: paged %d duty lead(s), %d already paged; incident %s",
                   root_id, flow_name, state_name, len(sent), len(outcomes) - len(sent), incident_id)
    return {"flow_run_id": root_id, "incident_id": incident_id, "incident_opened": opened_here,
            "sent": sent, "skipped": [o.recipient for o in outcomes if o.status == "skipped"]}


# --- resolve -------------------------------------------------------------------------------------


def _find_incident(db_session, dedup_key: str):
    from sqlalchemy import select

    from ledgerguard.register import service as register
    from ledgerguard.register.models import Incident

    incident = register.find_open_incident(db_session=db_session, dedup_key=dedup_key)
    if incident is not None:
        return incident
    return db_session.scalars(select(Incident).where(Incident.dedup_key == dedup_key)
                              .order_by(Incident.opened_at.desc())).first()


@task(name="record-resolve", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def record_resolve(emergency_type: str, dedup_key: str, signal_id: str | None) -> dict:
    from prefect.artifacts import create_table_artifact

    from ledgerguard.register import service as register
    from ledgerguard.response.reporting import incident_snapshot, report_context
    from tasks.record import render_for, send_report

    runtime = get_runtime()
    logger = get_run_logger()
    run_id = str(flow_run.id) if flow_run.id else None
    with runtime.session() as db_session:
        incident = _find_incident(db_session, dedup_key)
        if incident is None:
            logger.warning("resolve for %s: no incident in the register", dedup_key)
            return {"incident_id": None, "status": "no_incident", "sent": []}
        incident_id = incident.id
        if run_id:
            register.link_flow_run(db_session=db_session, incident_id=incident_id, flow_run_id=run_id,
                                   flow_name="resolve-incident")
        register.append_timeline(
            db_session=db_session, incident_id=incident_id, stage=Stage.RECORD.value, kind="resolve.received",
            message=f"monitoring reported the condition resolved (signal {signal_id or '—'})",
            actor="monitoring", data={"signal_id": signal_id, "dedup_key": dedup_key}, flow_run_id=run_id)
        if IncidentStatus(incident.status).is_open:
            # The intake normally sets the status; if it did not, the resolve still lands.
            register.set_status(db_session=db_session, incident_id=incident_id, status=IncidentStatus.RESOLVED,
                                actor="monitoring", note="resolved by monitoring", flow_run_id=run_id)

    entry = runtime.catalog.get(incident.emergency_type if incident.emergency_type else emergency_type)
    snapshot = incident_snapshot(runtime=runtime, incident_id=incident_id)
    status = snapshot["incident"]["status"]
    if status in ("resolved", "closed"):
        from tasks.people import stop_escalation

        stop_escalation(incident_id=incident_id, message=f"incident {status} by monitoring")
    context = report_context(runtime=runtime, entry=entry, snapshot=snapshot,
                             run={"flow_run_id": run_id, "flow_run_name": flow_run.name, "source": "monitoring",
                                  "requested_by": "monitoring", "drill": bool(snapshot["incident"]["drill"])})
    if not snapshot["incident"]["level"]:
        # Never classified (no emergency run got that far): the timeline says so; a report
        # needs an assessment, so the duty lead's page and the next run carry the story.
        logger.warning("incident %s resolved before it was classified: no report", incident_id)
        return {"incident_id": incident_id, "status": status, "sent": []}
    create_table_artifact(
        key=f"timeline-{incident_id}",
        table=[{"seq": e["seq"], "at": str(e["occurred_at"]), "stage": e["stage"], "kind": e["kind"],
                "actor": e["actor"], "message": e["message"]} for e in snapshot["timeline"]],
        description=f"Timeline of incident {incident_id}")
    # Same step as the record stage: one report per incident state, never twice.
    sent, failed = send_report(runtime=runtime, entry=entry, incident_id=incident_id,
                                step=f"report:{status}:level{snapshot['incident']['level']}",
                                message=render_for(runtime, entry.templates.report, context),
                                attachments=[], run_id=run_id)
    if failed:
        raise RuntimeError("report delivery failed: " + "; ".join(failed))
    return {"incident_id": incident_id, "status": status, "sent": sent}
