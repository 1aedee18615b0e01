"""云记账SaaS中断 — Bookkeeping SaaS outage."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import ResponseOutcome, SaasOutageRequest


@flow(name="saas-outage", flow_run_name="saas-outage-{request.service}", validate_parameters=True, persist_result=True)
def saas_outage(request: SaasOutageRequest) -> ResponseOutcome:
    """Status page, API errors and sync lag of the bookkeeping SaaS."""
    return run_respond(request.to_request())
