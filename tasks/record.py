"""Record stage: close the loop in the register, in Prefect's artifacts and by email."""

from __future__ import annotations

from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ledgerguard.channels.contacts import management_recipients
from ledgerguard.channels.messaging import render_message
from ledgerguard.models import Detection, Level, Stage
from ledgerguard.register import service as register
from ledgerguard.response.models import Classified, ResponseOutcome, ResponseRequest, StepResult
from ledgerguard.response.notifying import redeliver_failed, send_once
from ledgerguard.response.reporting import (
    incident_snapshot,
    pipl57_notice_path,
    report_context,
    write_text,
)
from ledgerguard.response.runbook import decide_status
from ledgerguard.runtime import get_runtime
from tasks.people import stop_escalation


def tag_flow_runs(tags: list[str], *, include_root: bool = True) -> None:
    """Add tags to this flow run (and the emergency flow that called it) so the UI can filter.

    Runs created by a deployment or inside `prefect.tags(...)` already carry their tags; the
    context says so without a round trip to the server, so nothing is sent then.
    """
    wanted = set(tags)
    current_id = str(flow_run.id) if flow_run.id else None
    targets: dict[str, set[str] | None] = {}
    if current_id and not wanted <= set(flow_run.tags or ()):
        targets[current_id] = set(flow_run.tags or ())
    root_id = str(flow_run.root_flow_run_id) if flow_run.root_flow_run_id else None
    if include_root and root_id and root_id != current_id:
        targets[root_id] = None  # unknown until read
    if not targets:
        return
    with get_client(sync_client=True) as client:
        for run_id, known in targets.items():
            current = known if known is not None else set(client.read_flow_run(run_id).tags)
            if not wanted <= current:
                client.update_flow_run(run_id, tags=sorted(current | wanted))


def send_report(*, runtime, entry, incident_id, step, message, attachments, run_id,
                drill: bool = False) -> tuple[list[str], list[str]]:
    """The run's report to the management list (a drill run that opened no incident: to the drill
    recipients when the agency lists any; a drill incident's reports are redirected by send_once)."""
    from ledgerguard.channels.contacts import drill_recipients

    sent, failed = [], []
    recipients = (drill_recipients(runtime.contacts) if drill and incident_id is None else []) \
        or management_recipients(runtime.contacts)
    for recipient in recipients:
        outcome = send_once(runtime=runtime, incident_id=incident_id, stage=Stage.RECORD, step=step,
                            recipient=recipient, message=message, template=entry.templates.report,
                            attachments=attachments, flow_run_id=run_id)
        (failed if outcome.status == "failed" else sent).append(
            f"{recipient.address} ({outcome.status}{': ' + outcome.error if outcome.error else ''})")
    return sent, failed


def render_for(runtime, name: str, context: dict):
    return render_message(name=name, language=runtime.settings.language, context=context,
                          templates_dir=runtime.settings.templates_dir)


def _run_info(request: ResponseRequest, **extra) -> dict:
    return {"flow_run_id": str(flow_run.id) if flow_run.id else None,
            "flow_run_name": flow_run.name, "requested_by": request.requested_by,
            "source": request.source, "drill": request.drill, **extra}


@task(name="record", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def record_incident(request: ResponseRequest, classified: Classified, steps: list[StepResult],
                    notified: list[str], notify_error: str | None) -> ResponseOutcome:
    runtime = get_runtime()
    entry = runtime.catalog.get(request.emergency_type)
    language = runtime.settings.language
    run_id = str(flow_run.id) if flow_run.id else None
    incident_id = classified.incident_id

    status = decide_status(steps=steps, remediated=request.remediate)
    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        if status is not None and incident.status != status.value:
            register.set_status(db_session=db_session, incident_id=incident_id, status=status,
                                actor="ledgerguard", note=f"runbook: {len(steps)} step(s)")
        if notify_error:
            register.append_timeline(db_session=db_session, incident_id=incident_id,
                                     stage=Stage.NOTIFY.value, kind="notification.incomplete",
                                     message=notify_error, flow_run_id=run_id)

    snapshot = incident_snapshot(runtime=runtime, incident_id=incident_id)
    final_status = snapshot["incident"]["status"]
    if final_status in ("resolved", "closed"):
        stop_escalation(incident_id=incident_id, message=f"incident {final_status}")
    context = report_context(runtime=runtime, entry=entry, snapshot=snapshot,
                             run=_run_info(request, steps=[s.model_dump() for s in steps],
                                           notified=notified, notify_error=notify_error))
    postmortem = render_for(runtime, entry.templates.postmortem, context)
    folder = runtime.settings.reports_dir / incident_id
    postmortem_path = write_text(folder / f"postmortem-{incident_id}.md", postmortem.markdown or postmortem.text)

    create_markdown_artifact(key=f"postmortem-{incident_id}", markdown=postmortem.markdown or postmortem.text,
                             description=f"Post-mortem of incident {incident_id}")
    create_table_artifact(
        key=f"timeline-{incident_id}",
        table=[{"seq": e["seq"], "at": str(e["occurred_at"]), "stage": e["stage"], "kind": e["kind"],
                "actor": e["actor"], "message": e["message"]} for e in snapshot["timeline"]],
        description=f"Timeline of incident {incident_id}")

    attachments = [postmortem_path, *draft_notices(runtime=runtime, entry=entry, snapshot=snapshot,
                                                   context=context, run_id=run_id)]

    # Manual steps left open become a checklist the responder ticks in the UI.
    if any(s.kind == "manual" and s.status == "open" for s in steps):
        from tasks.escalate import start_checklist

        start_checklist(runtime=runtime, incident_id=incident_id, run_id=run_id, logger=get_run_logger())

    # Deliveries that failed in an earlier attempt or run go out now, before the report.
    redeliver_failed(runtime=runtime, entry=entry, incident_id=incident_id, context=context, flow_run_id=run_id)
    # One report per incident state: a re-run that changes nothing sends nothing again.
    report = render_for(runtime, entry.templates.report, context)
    report_path = write_text(folder / f"report-{run_id or 'local'}.html", report.html or report.text)
    sent, failed = send_report(
        runtime=runtime, entry=entry, incident_id=incident_id,
        step=f"report:{final_status}:level{classified.level}", message=report,
        attachments=attachments, run_id=run_id)
    if failed:
        raise RuntimeError("report delivery failed: " + "; ".join(failed))

    assessment = classified.assessment
    get_run_logger().info("incident %s is %s; report to %d recipient(s)", incident_id, final_status, len(sent))
    return ResponseOutcome(
        emergency_type=entry.id, resource=request.resource, incident_id=incident_id,
        incident_created=classified.created, status=final_status, level=classified.level,
        level_label=Level(classified.level).label(language),
        priority=assessment.get("priority"), regulatory_grade=assessment.get("regulatory_grade"),
        rationale=[f"{l['dimension']} {l['value']}: {l.get('text') or l['condition']}" for l in assessment.get("fired", [])],
        notified=notified, notifications_failed=[notify_error] if notify_error else [],
        steps=steps,
        obligations=[f"{o['law']}: {o['action']} → {o['recipient']} "
                     f"({'immediately' if o['immediate'] else 'by ' + local_time(o['deadline'], runtime.settings.timezone)})"
                     + (f" ¥{o['amount_yuan']:,.2f} so far" if o.get("amount_yuan") is not None else "")
                     for o in snapshot["obligations"]],
        report_path=str(report_path), postmortem_path=str(postmortem_path), flow_run_id=run_id,
    )


def draft_notices(*, runtime, entry, snapshot, context, run_id) -> list:
    """Draft the notices the incident needs (PIPL Art. 57, each affected client, the CAC report,
    the police report: ``ledgerguard.notices``) as versioned rows of ``notice_drafts``.

    Drafts only: nothing goes outside until a person with an approving role approves that exact
    version (`ledgerguard notices approve`, or the `send-notice` form). An unchanged incident
    re-renders to the same bytes and adds no version. Returns the files to attach to the report
    for management: the PIPL Art. 57 draft and the authorities' drafts (client drafts are listed
    by `ledgerguard notices list`, one per client would swamp the report).
    """
    from ledgerguard.channels.messaging import MessageTemplateError
    from ledgerguard.notices.drafting import draft_for_incident
    from ledgerguard.notices.service import NoticePolicyError

    incident_id = snapshot["incident"]["id"]
    try:
        drafted = draft_for_incident(runtime=runtime, entry=entry, snapshot=snapshot, context=context,
                                     flow_run_id=run_id)
    except (NoticePolicyError, MessageTemplateError) as exc:
        # A broken notices file or template must not hold back the report: say so where people look.
        get_run_logger().error("notice drafts not written: %s", exc)
        with runtime.session() as db_session:
            register.append_timeline(db_session=db_session, incident_id=incident_id, stage=Stage.RECORD.value,
                                     kind="notice.failed", flow_run_id=run_id,
                                     message=f"notice drafts could not be written: {exc}")
        return []
    for notice in drafted:
        if notice.created and notice.kind != "client":
            key = (f"notice-pipl57-{incident_id}" if notice.kind == "pipl57"
                   else f"notice-{notice.kind.replace('_', '-')}-{incident_id}")
            create_markdown_artifact(key=key, markdown=notice.path.read_text(encoding="utf-8"),
                                     description=f"{notice.kind} notice draft v{notice.version} for incident "
                                                 f"{incident_id} (needs approval: ledgerguard notices approve "
                                                 f"{notice.id} --by <id>)")
    if any(n.created for n in drafted):
        create_table_artifact(
            key=f"notices-{incident_id}",
            table=[{"id": n.id, "kind": n.kind, "audience": n.audience, "version": n.version, "status": n.status,
                    "file": n.path.name, "missing": ", ".join(n.missing)} for n in drafted],
            description=f"Notice drafts of incident {incident_id}, each waiting for a person's approval")
    attachments = []
    if any(n.kind == "pipl57" for n in drafted):
        attachments.append(pipl57_notice_path(runtime.settings.reports_dir, incident_id))
    attachments += [n.path for n in drafted if n.kind not in ("pipl57", "client")]
    return attachments


def local_time(value, timezone_name: str) -> str:
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(timezone_name)).strftime("%Y-%m-%d %H:%M %Z")


@task(name="record-no-incident", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def record_clear(request: ResponseRequest, detection: Detection) -> ResponseOutcome:
    """Detection found nothing: keep the signal and the reasons, and say so in the report."""
    runtime = get_runtime()
    entry = runtime.catalog.get(request.emergency_type)
    run_id = str(flow_run.id) if flow_run.id else None
    signal = request.to_signal()

    with runtime.session() as db_session:
        open_incident = register.find_open_incident(db_session=db_session, dedup_key=signal.dedup_key)
        incident_id = open_incident.id if open_incident else None
        register.record_signal(db_session=db_session, signal=signal, incident_id=incident_id, flow_run_id=run_id)
        if incident_id:
            # The incident this signal belongs to is still open: the quiet re-check goes on its timeline.
            if run_id:
                register.link_flow_run(db_session=db_session, incident_id=incident_id,
                                       flow_run_id=run_id, flow_name=entry.flow)
            register.append_timeline(db_session=db_session, incident_id=incident_id,
                                     stage=Stage.DETECT.value, kind="recheck.quiet",
                                     message="; ".join(detection.clear_reasons), flow_run_id=run_id)

    snapshot = incident_snapshot(runtime=runtime, incident_id=incident_id) if incident_id else None
    context = report_context(runtime=runtime, entry=entry, snapshot=snapshot,
                             run=_run_info(request, clear_reasons=detection.clear_reasons,
                                           resource=request.resource))
    if incident_id:
        redeliver_failed(runtime=runtime, entry=entry, incident_id=incident_id, context=context,
                         flow_run_id=run_id)
    step = (f"report:{snapshot['incident']['status']}:level{snapshot['incident']['level']}"
            if snapshot else f"clear:{run_id or signal.dedup_key}")
    sent, failed = ([], [])
    if snapshot or runtime.settings.report_when_clear:
        sent, failed = send_report(runtime=runtime, entry=entry, incident_id=incident_id, step=step,
                                    message=render_for(runtime, entry.templates.report, context),
                                    attachments=[], run_id=run_id, drill=request.drill)
    if failed:
        raise RuntimeError("report delivery failed: " + "; ".join(failed))
    tag_flow_runs([f"emergency:{entry.id}"] + (["drill"] if request.drill else []), include_root=False)
    return ResponseOutcome(emergency_type=entry.id, resource=request.resource, incident_id=incident_id,
                           status=snapshot["incident"]["status"] if snapshot else "no_incident",
                           clear_reasons=detection.clear_reasons, flow_run_id=run_id)
