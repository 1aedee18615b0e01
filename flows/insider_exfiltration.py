"""内部外泄/离职带走 — Insider exfiltration."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import InsiderExfiltrationRequest, ResponseOutcome


@flow(name="insider-exfiltration", flow_run_name="insider-exfiltration-{request.staff_id}", validate_parameters=True, persist_result=True)
def insider_exfiltration(request: InsiderExfiltrationRequest) -> ResponseOutcome:
    """Bulk exports, USB/cloud uploads, access after resignation."""
    return run_respond(request.to_request())
