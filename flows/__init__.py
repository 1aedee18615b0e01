"""Prefect flows: one per emergency type, all running the shared `respond` pipeline."""

from flows.backup_failure import backup_failure
from flows.ledger_loss import ledger_loss
from flows.respond import respond
from flows.sweeps import backup_sweep, ledger_sweep
from flows.watchdog import page_duty_lead, resolve_incident

EMERGENCY_FLOWS = {"backup_failure": backup_failure, "ledger_loss": ledger_loss}

__all__ = ["EMERGENCY_FLOWS", "backup_failure", "backup_sweep", "ledger_loss", "ledger_sweep",
           "page_duty_lead", "resolve_incident", "respond"]
