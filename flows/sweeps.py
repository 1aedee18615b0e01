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

from datetime import datetime

from ledgerguard.runtime import get_runtime
from tasks.sweep import probe_live_targets, summarise_sweep, sweep_detect, sweep_raise


def _sweep(emergency_type: str, resources: list[str], sweep_name: str, drill: bool) -> dict:
    rows = sweep_detect(emergency_type, resources)
    if any(r["found"] for r in rows):
        rows = sweep_raise(emergency_type, rows, sweep_name, drill)
    return summarise_sweep(rows, sweep_name)


def _sweep_types(sweep_name: str, plan: dict[str, list[str]], drill: bool) -> dict:
    """One sweep over several types; each type's summary is its own artifact."""
    return {emergency_type: _sweep(emergency_type, resources, f"{sweep_name}-{emergency_type.replace('_', '-')}",
                                   drill)
            for emergency_type, resources in plan.items() if resources}


@flow(name="ledger-sweep")
def ledger_sweep(drill: bool = False) -> dict:
    """Run the ledger detectors over every client's ledger; each finding is raised as a signal."""
    clients = get_runtime().agency.client_ids
    return _sweep("ledger_loss", [f"ledger:{c}" for c in clients], "ledger-sweep", drill)


@flow(name="backup-sweep")
def backup_sweep(backup_target: str = "nightly", drill: bool = False) -> dict:
    """Check the backup sets against the RPO; a finding is raised as a signal."""
    return _sweep("backup_failure", [f"backups:{backup_target}"], "backup-sweep", drill)


@flow(name="probe-sweep")
def probe_sweep(drill: bool = False) -> dict:
    """Probe the e-tax portals and the bookkeeping SaaS, then judge the probe log; outages become signals."""
    probed = probe_live_targets()
    return _sweep_types("probe-sweep", {
        "etax_outage": [f"etax:{portal}" for portal in probed["portals"]],
        "saas_outage": [f"saas:{service}" for service in probed["services"]],
    }, drill)


@flow(name="deadline-sweep")
def deadline_sweep(drill: bool = False) -> dict:
    """Unfiled returns, annual items, expiring certificates and failed tax debits against their deadlines."""
    year = datetime.now(get_runtime().agency.tz).year
    return _sweep_types("deadline-sweep", {
        "filing_backlog": ["filings:current"],
        "annual_deadline": [f"annual:{year}"],
        "credential_expiry": ["credential:all"],
        "payment_failure": ["payments:all"],
    }, drill)


@flow(name="security-sweep")
def security_sweep(drill: bool = False) -> dict:
    """File shares (ransomware), staff exports and logins, office alarms; findings become signals."""
    from ledgerguard.sources import facilities, fileshare

    agency = get_runtime().agency
    root = agency.data_file(*fileshare.SHARES_ROOT)
    shares = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return _sweep_types("security-sweep", {
        "ransomware": [f"fileserver:{share}" for share in shares],
        "insider_exfiltration": ["user:all"],
        "account_takeover": ["account:all"],
        "office_outage": [f"office:{site}" for site in facilities.load_sites(agency)],
    }, drill)
