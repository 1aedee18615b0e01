"""Sweeps: scheduled detection over the agency's data; findings are raised as signals.

A finding does not call an emergency flow directly: it becomes a Signal (source ``sweep``)
written to the register and its outbox, exactly like an alert from monitoring. The relay turns
it into a ``ledgerguard.signal.firing`` event and the type's deployment trigger starts the flow.
A finding for a resource whose incident is still open only records the signal on that incident
(no new run, nobody paged again). When all is quiet a sweep sends nothing: it logs a summary
and leaves a small table artifact.
"""

from __future__ import annotations

from prefect import flow

from ledgerguard.runtime import get_runtime
from tasks.sweep import summarise_sweep, sweep_detect, sweep_raise


def _sweep(emergency_type: str, resources: list[str], sweep_name: str, drill: bool) -> dict:
    rows = sweep_detect(emergency_type, resources)
    if any(r["found"] for r in rows):
        rows = sweep_raise(emergency_type, rows, sweep_name, drill)
    return summarise_sweep(rows, sweep_name)


@flow(name="ledger-sweep")
def ledger_sweep(drill: bool = False) -> dict:
    """Run the ledger detectors over every client's ledger; each finding is raised as a signal."""
    clients = get_runtime().agency.client_ids
    return _sweep("ledger_loss", [f"ledger:{c}" for c in clients], "ledger-sweep", drill)


@flow(name="backup-sweep")
def backup_sweep(backup_target: str = "nightly", drill: bool = False) -> dict:
    """Check the backup sets against the RPO; a finding is raised as a signal."""
    return _sweep("backup_failure", [f"backups:{backup_target}"], "backup-sweep", drill)
