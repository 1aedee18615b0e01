"""Consistency stages: read the range's runs from Prefect, compare them with the register, and
report every problem (artifact + email to the management list)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ledgerguard.channels.contacts import management_recipients
from ledgerguard.channels.messaging import render_message
from ledgerguard.compliance.consistency import ConsistencyReport, check_consistency
from ledgerguard.models import Stage, utcnow
from ledgerguard.response.notifying import send_once
from ledgerguard.runtime import get_runtime
from tasks.history import read_runs, read_runs_between

DEFAULT_DAYS = 8  # a daily check looks back over a week and a day, so a weekend gap is seen twice
TEMPLATE = "consistency_report"


def run_check(runtime, start: datetime | None = None, end: datetime | None = None) -> ConsistencyReport:
    """The check itself (plain function: the CLI calls it without a flow run)."""
    end = end or utcnow()
    start = start or end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise ValueError(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    history = read_runs_between(start=start, end=end, emergency_only=True)
    with runtime.session() as db_session:
        return check_consistency(db_session=db_session, history=history, start=start, end=end,
                                 read_linked=lambda run_ids: read_runs(run_ids=run_ids, details=False))


@task(name="check-register-against-prefect", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def check_register_against_prefect(start: datetime | None = None, end: datetime | None = None) -> ConsistencyReport:
    report = run_check(get_runtime(), start, end)
    get_run_logger().info("consistency: %d incident(s), %d emergency run(s), %d problem(s)",
                          report.checked_incidents, report.checked_runs, len(report.problems))
    return report


@task(name="report-consistency", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def report_problems(report: ConsistencyReport, send: bool = True) -> list[str]:
    runtime = get_runtime()
    rows = [{"kind": p.kind, "severity": p.severity, "incident": p.incident_id or "", "run": p.flow_run_id or "",
             "flow": p.flow_name or "", "state": p.state or "", "detail": p.detail} for p in report.problems]
    create_table_artifact(key="consistency-check", table=rows or [{"kind": "none", "detail": "register and Prefect agree"}],
                          description=f"Consistency check {report.start:%Y-%m-%d %H:%M} – {report.end:%Y-%m-%d %H:%M} UTC")
    message = render_message(name=TEMPLATE, language=runtime.settings.language,
                             context={"report": report.model_dump(), "counts": report.counts(), "ok": report.ok},
                             templates_dir=runtime.settings.templates_dir)
    create_markdown_artifact(key="consistency-report", markdown=message.text,
                             description="What the consistency check found")
    if not send or not report.problems:
        return []
    # One mail per distinct set of problems: the daily check repeats a problem until it is fixed,
    # but says it once.
    digest = hashlib.sha256("\n".join(sorted(str(p) for p in report.problems)).encode()).hexdigest()[:16]
    sent = []
    for recipient in management_recipients(runtime.contacts):
        outcome = send_once(runtime=runtime, incident_id=None, stage=Stage.RECORD, step=f"consistency:{digest}",
                            recipient=recipient, message=message, template=TEMPLATE,
                            flow_run_id=str(flow_run.id) if flow_run.id else None)
        sent.append(f"{recipient.address} ({outcome.status})")
    return sent
