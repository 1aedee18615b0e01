"""Remediate stage: one task run per runbook step, with the step's own retries."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import DEFAULT
from prefect.runtime import flow_run

from ledgerguard.response.models import StepResult
from ledgerguard.response.runbook import run_step
from ledgerguard.runtime import get_runtime


@task(name="runbook-step", cache_policy=DEFAULT, persist_result=True, task_run_name="{step_id}")
def run_runbook_step(emergency_type: str, step_id: str, incident_id: str, resource: str,
                     dry_run: bool = False, as_of: datetime | None = None) -> StepResult:
    runtime = get_runtime()
    entry = runtime.catalog.get(emergency_type)
    step = next(s for s in entry.runbook if s.id == step_id)
    outcome = run_step(runtime=runtime, entry=entry, step=step, incident_id=incident_id,
                       resource=resource, flow_run_id=str(flow_run.id) if flow_run.id else None,
                       dry_run=dry_run, now=as_of)
    get_run_logger().info("%s: %s", step_id, outcome.summary)
    return StepResult(step_id=outcome.step_id, kind=outcome.kind, status=outcome.status,
                      summary=outcome.summary)
