"""Sweep tasks: run detectors over many resources, raise findings as signals, summarise."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from ledgerguard.models import Signal, utcnow
from ledgerguard.runtime import get_runtime
from ledgerguard.signals import raise_sweep_signal


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
        row["signal"] = raise_sweep_signal(runtime=runtime, signal=signal, requested_by=sweep_name)
    return rows


@task(name="sweep-summary", cache_policy=NO_CACHE)
def summarise_sweep(rows: list[dict], sweep_name: str) -> dict:
    logger = get_run_logger()
    found = [r for r in rows if r["found"]]
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


@task(name="probe-targets", cache_policy=NO_CACHE)
def probe_live_targets() -> dict:
    """Probe every live target once (httpx) and append the results to the agency's probe log;
    the outage detectors then judge the log. Returns the portals and services to check."""
    from ledgerguard.sources import probes

    runtime = get_runtime()
    results = probes.sweep(runtime.agency)
    targets = probes.load_targets(runtime.agency)
    failed = [r for r in results if not r.ok]
    (get_run_logger().warning if failed else get_run_logger().info)(
        "probed %d live target(s), %d failed", len(results), len(failed))
    return {"probed": len(results), "failed": len(failed), "portals": targets.portals,
            "services": targets.services}
