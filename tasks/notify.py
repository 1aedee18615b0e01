"""Notify stage: tell the people the level calls for, once each."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ledgerguard.channels.messaging import render_message
from ledgerguard.models import Stage
from ledgerguard.register import service as register
from ledgerguard.response.models import Classified
from ledgerguard.response.notifying import route, send_once
from ledgerguard.response.reporting import incident_snapshot, report_context
from ledgerguard.runtime import get_runtime


class NotificationsFailed(RuntimeError):
    """Some deliveries failed; Prefect retries the task and the register skips those already sent."""


@task(name="notify", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def notify_responders(emergency_type: str, classified: Classified) -> list[str]:
    runtime = get_runtime()
    entry = runtime.catalog.get(emergency_type)
    run_id = str(flow_run.id) if flow_run.id else None
    logger = get_run_logger()

    routing = route(runtime=runtime, entry=entry, level=classified.level,
                    affected_clients=classified.affected_clients)
    if routing.unresolved_roles:
        with runtime.session() as db_session:
            register.append_timeline(
                db_session=db_session, incident_id=classified.incident_id, stage=Stage.NOTIFY.value,
                kind="routing.unresolved",
                message="no one to notify for role(s): " + ", ".join(routing.unresolved_roles),
                flow_run_id=run_id)
        logger.error("no recipients for roles %s", routing.unresolved_roles)

    snapshot = incident_snapshot(runtime=runtime, incident_id=classified.incident_id)
    context = report_context(runtime=runtime, entry=entry, snapshot=snapshot, run={"flow_run_id": run_id})
    message = render_message(name=entry.templates.staff, language=runtime.settings.language,
                             context=context, templates_dir=runtime.settings.templates_dir)

    sent: list[str] = []
    failed: list[str] = []
    for recipient in routing.recipients:
        outcome = send_once(runtime=runtime, incident_id=classified.incident_id, stage=Stage.NOTIFY,
                            step=f"level{classified.level}", recipient=recipient, message=message,
                            template=entry.templates.staff, flow_run_id=run_id)
        (failed if outcome.status == "failed" else sent).append(
            f"{recipient.name} <{recipient.channel}>" + (" (already sent)" if outcome.status == "skipped" else ""))
        if outcome.status == "failed":
            logger.warning("delivery to %s via %s failed: %s", recipient.person_id, recipient.channel,
                           outcome.error)
    if failed:
        raise NotificationsFailed(f"{len(failed)} of {len(routing.recipients)} deliveries failed: "
                                  + ", ".join(failed))
    logger.info("notified %d recipient(s)", len(sent))
    return sent
