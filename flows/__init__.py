"""Prefect flows: one per emergency type, all running the shared `respond` pipeline."""

from flows.backup_failure import backup_failure
from flows.ledger_loss import ledger_loss
from flows.respond import respond

EMERGENCY_FLOWS = {"backup_failure": backup_failure, "ledger_loss": ledger_loss}

__all__ = ["EMERGENCY_FLOWS", "backup_failure", "ledger_loss", "respond"]
