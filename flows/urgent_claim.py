"""客户紧急报账 — Client urgent expense claim."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import ResponseOutcome, UrgentClaimRequest


@flow(name="urgent-claim", flow_run_name="urgent-claim-{request.request_id}", validate_parameters=True, persist_result=True)
def urgent_claim(request: UrgentClaimRequest) -> ResponseOutcome:
    """An urgent expense-claim request, reviewed against its documents."""
    return run_respond(request.to_request())
