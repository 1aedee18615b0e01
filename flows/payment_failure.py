"""扣款失败/资金异常 — Tax debit failure or payment fraud."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import PaymentFailureRequest, ResponseOutcome


@flow(name="payment-failure", flow_run_name="payment-failure-{request.client_id}", validate_parameters=True, persist_result=True)
def payment_failure(request: PaymentFailureRequest) -> ResponseOutcome:
    """Failed tax debits, unverified bank-account changes."""
    return run_respond(request.to_request())
