"""账套误删/损坏 — a client's ledger was deleted or corrupted."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import LedgerLossRequest, ResponseOutcome


@flow(name="ledger-loss", flow_run_name="ledger-loss-{request.client_id}", validate_parameters=True, persist_result=True)
def ledger_loss(request: LedgerLossRequest) -> ResponseOutcome:
    """Check a client's ledger against its last good backup; restore, verify and swap it in."""
    return run_respond(request.to_request())
