"""钓鱼/账号被盗 — Phishing or account takeover."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import AccountTakeoverRequest, ResponseOutcome


@flow(name="account-takeover", flow_run_name="account-takeover-{request.user}", validate_parameters=True, persist_result=True)
def account_takeover(request: AccountTakeoverRequest) -> ResponseOutcome:
    """New-device or new-region logins, MFA failures, phishing clicks."""
    return run_respond(request.to_request())
