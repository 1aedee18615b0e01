"""The scheduled sweeps over the agency's data: quiet on a healthy agency; a finding goes into the
register's outbox as a signal of its type (the relay then starts the type's flow)."""

from __future__ import annotations


import pytest
import yaml

from tests.support.http_stub import HttpStub

pytestmark = pytest.mark.prefect


def _outbox(runtime) -> list:
    from ledgerguard.register import service as register

    with runtime.session() as db_session:
        return [item.payload for item in register.list_outbox(db_session=db_session)]


@pytest.mark.parametrize("sweep_name", ["probe_sweep", "deadline_sweep", "security_sweep"])
def test_a_healthy_agency_gives_every_sweep_nothing_to_raise(live, sweep_name):
    import flows
    from ledgerguard.runtime import get_runtime

    summary = getattr(flows, sweep_name)()
    assert summary, "the sweep checked nothing"
    for emergency_type, result in summary.items():
        assert result["checked"] >= 1 and result["found"] == 0 and result["errors"] == 0, (emergency_type, result)
    assert _outbox(get_runtime()) == []


def test_a_client_with_two_months_unfiled_is_raised_by_the_deadline_sweep(live):
    """Whatever the day of the month: the previous period's deadline has passed, and a client who
    filed nothing for it nor for the current one is a 非正常户 risk the sweep must raise."""
    from datetime import datetime, timezone

    from flows import deadline_sweep
    from ledgerguard.detectors import InjectionContext, get_injector
    from ledgerguard.runtime import get_runtime
    from ledgerguard.sources import filings as src

    runtime = get_runtime()
    agency = runtime.agency
    current = src.current_period(datetime.now(timezone.utc), agency.tz)
    year, month = int(current[:4]), int(current[5:])
    previous = f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"
    client = agency.client_ids[0]
    _, df = src.load(agency)
    injector = get_injector("filing.inject_backlog")
    for period in (previous, current):
        for tax in sorted(set(df[df["client_id"] == client]["tax"])):
            injector.inject(InjectionContext(agency=agency, resource="filings:current"), clients=[client], tax=tax,
                            period=period)
    summary = deadline_sweep()
    assert summary["filing_backlog"]["found"] == 1 and summary["filing_backlog"]["queued"] == 1
    [event] = _outbox(runtime)
    assert event["event"] == "ledgerguard.signal.firing"
    assert event["payload"]["request"]["period"] == "current" and event["payload"]["request"]["source"] == "sweep"


def test_the_probe_sweep_probes_live_targets_into_the_probe_log(live):
    import pandas as pd

    from flows import probe_sweep
    from ledgerguard.runtime import get_runtime
    from ledgerguard.sources import probes

    runtime = get_runtime()
    path = probes.targets_path(runtime.agency)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    primary = next(t for t in raw["targets"] if t["kind"] == "etax" and t.get("role", "primary") == "primary")
    with HttpStub([200]) as portal:
        primary.update(live=True, url=f"http://127.0.0.1:{portal.port}/login")
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        before = len(pd.read_csv(probes.probe_log_path(runtime.agency)))
        summary = probe_sweep()
        assert portal.hits >= 1
    log = pd.read_csv(probes.probe_log_path(runtime.agency))
    assert len(log) > before and primary["name"] in set(log["target"].tail(len(log) - before))
    assert summary["etax_outage"]["found"] == 0
