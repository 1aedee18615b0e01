"""申报错误 — Wrong filing."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import ResponseOutcome, WrongFilingRequest


@flow(name="wrong-filing", flow_run_name="wrong-filing-{request.period}", validate_parameters=True, persist_result=True)
def wrong_filing(request: WrongFilingRequest) -> ResponseOutcome:
    """Invoices issued vs sales declared, tax-bureau risk prompts."""
    return run_respond(request.to_request())
