"""申报积压 — Filing deadline backlog."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import FilingBacklogRequest, ResponseOutcome


@flow(name="filing-backlog", flow_run_name="filing-backlog-{request.period}", validate_parameters=True, persist_result=True)
def filing_backlog(request: FilingBacklogRequest) -> ResponseOutcome:
    """Unfiled returns against the statutory deadline."""
    return run_respond(request.to_request())
