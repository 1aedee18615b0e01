"""Sweeps: scheduled detection over the agency's data; findings are raised as signals.

A finding does not call an emergency flow directly: it becomes a Signal (source ``sweep``)
written to the register and its outbox, exactly like an alert from monitoring. The relay turns
it into a ``ledgerguard.signal.firing`` event and the type's deployment trigger starts the flow.
A finding for a resource whose incident is still open only records the signal on that incident
(no new run, nobody paged again). When all is quiet a sweep sends nothing: it logs a summary
and leaves a small table artifact.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from ledgerguard.models import Signal, utcnow
from ledgerguard.runtime import get_runtime


def raise_signal(*, runtime, signal: Signal, requested_by: str) -> str:
    """Write a sweep finding to the register and the outbox through the intake's own path.

    Returns what happened: ``joined`` (the incident for this dedup key is still open: the
    signal is recorded on it and nothing fires, so a sweep every 15 minutes does not re-run the
    flow or page anyone again), else the status `register.accept_signal` reports (``queued``:
    a firing event waits in the outbox for the relay; ``coalesced``; ``suppressed``…).
    """
    from ledgerguard.register import service as register

    with runtime.session() as db_session:
        open_incident = register.find_open_incident(db_session=db_session, dedup_key=signal.dedup_key)
        if open_incident is not None:
            register.record_signal(db_session=db_session, signal=signal, incident_id=open_incident.id)
            return "joined"
        return register.accept_signal(db_session=db_session, signal=signal, actor=requested_by).status


@task(name="sweep-detect", cache_policy=NO_CACHE)
def sweep_detect(emergency_type: str, resources: list[str]) -> list[dict]:
    """Run the type's catalog detectors over each resource; one row per resource."""
    from ledgerguard.response.detection import run_detectors

    runtime = get_runtime()
    entry = runtime.catalog.get(emergency_type)
    rows = []
    now = utcnow()
    for resource in resources:
        try:
            detection = run_detectors(entry=entry, agency=runtime.agency, resource=resource,
                                      scratch_dir=runtime.settings.scratch_dir / "sweep", now=now)
        except Exception as exc:  # noqa: BLE001 — one unreadable resource must not stop the sweep
            rows.append({"resource": resource, "found": False, "error": f"{type(exc).__name__}: {exc}",
                         "summary": ""})
            continue
        rows.append({"resource": resource, "found": detection.found, "error": "",
                     "summary": "; ".join(f.summary for f in detection.findings),
                     "detectors": [f.detector for f in detection.findings]})
    return rows


@task(name="sweep-raise", cache_policy=NO_CACHE)
def sweep_raise(emergency_type: str, rows: list[dict], sweep_name: str, drill: bool) -> list[dict]:
    runtime = get_runtime()
    for row in rows:
        if not row["found"]:
            row["signal"] = ""
            continue
        signal = Signal(source="sweep", emergency_type=emergency_type, resource=row["resource"],
                        labels={"sweep": sweep_name, "detectors": ",".join(row.get("detectors", []))},
                        drill=drill, summary=row["summary"][:2000])
        row["signal"] = raise_signal(runtime=runtime, signal=signal, requested_by=sweep_name)
    return rows


def _sweep(emergency_type: str, resources: list[str], sweep_name: str, drill: bool) -> dict:
    logger = get_run_logger()
    rows = sweep_detect(emergency_type, resources)
    found = [r for r in rows if r["found"]]
    if found:
        rows = sweep_raise(emergency_type, rows, sweep_name, drill)
    errors = [r for r in rows if r["error"]]
    summary = {"checked": len(rows), "found": len(found), "errors": len(errors),
               "queued": sum(1 for r in rows if r.get("signal") in ("queued", "coalesced")),
               "joined_open": sum(1 for r in rows if r.get("signal") == "joined")}
    # Small when quiet: one summary row, plus one row per finding or error.
    table = [{"resource": "(all)", "result": f"{summary['checked']} checked, {summary['found']} found, "
                                             f"{summary['errors']} unreadable", "signal": ""}]
    table += [{"resource": r["resource"], "result": r["error"] or r["summary"], "signal": r.get("signal", "")}
              for r in rows if r["found"] or r["error"]]
    create_table_artifact(key=sweep_name, table=table, description=f"{sweep_name}: {summary}")
    (logger.warning if found or errors else logger.info)("%s: %s", sweep_name, summary)
    return summary


@flow(name="ledger-sweep")
def ledger_sweep(drill: bool = False) -> dict:
    """Run the ledger detectors over every client's ledger; each finding is raised as a signal."""
    clients = get_runtime().agency.client_ids
    return _sweep("ledger_loss", [f"ledger:{c}" for c in clients], "ledger-sweep", drill)


@flow(name="backup-sweep")
def backup_sweep(backup_target: str = "nightly", drill: bool = False) -> dict:
    """Check the backup sets against the RPO; a finding is raised as a signal."""
    return _sweep("backup_failure", [f"backups:{backup_target}"], "backup-sweep", drill)
