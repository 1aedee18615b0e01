"""勒索/恶意程序 — Ransomware or malware."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import RansomwareRequest, ResponseOutcome


@flow(name="ransomware", flow_run_name="ransomware-{request.share}", validate_parameters=True, persist_result=True)
def ransomware(request: RansomwareRequest) -> ResponseOutcome:
    """Mass renames, ransom notes, unreadable ledgers on a file share."""
    return run_respond(request.to_request())
