"""年度事项逾期风险 — Annual statutory deadline at risk."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import AnnualDeadlineRequest, ResponseOutcome


@flow(name="annual-deadline", flow_run_name="annual-deadline-{request.year}", validate_parameters=True, persist_result=True)
def annual_deadline(request: AnnualDeadlineRequest) -> ResponseOutcome:
    """工商年报, 汇算清缴 and 备案 not yet submitted."""
    return run_respond(request.to_request())
