"""E-tax runbook actions against a real local HTTP server: confirm external, queue, retry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from ledgerguard.detectors import InjectionContext, get_injector
from ledgerguard.embedded import free_port
from ledgerguard.remediation import ActionContext, ActionFailed, get_action
from ledgerguard.remediation.etax import queue_path, read_queue
from ledgerguard.sources import probes as src
from tests.support.http_stub import HttpStub


def point_targets(agency, portal_url=None, control_url=None):
    path = src.targets_path(agency)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    for t in spec["targets"]:
        if portal_url and t["kind"] == "etax" and t.get("role") == "primary":
            t.update(url=portal_url + "/" + t["endpoint"], live=True, timeout_s=2)
        if control_url and t.get("role") == "control":
            t.update(url=control_url + "/", live=True, timeout_s=2)
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")


def actx(agency, scratch, now=None, **params):
    return ActionContext(agency=agency, resource="etax:default", params=params, now=now or datetime.now(timezone.utc),
                         scratch_dir=scratch, incident_id="INC-A")


def test_confirm_external_when_the_portal_fails_and_controls_answer(agency, scratch):
    with HttpStub([502]) as portal, HttpStub([200]) as control:
        point_targets(agency, portal.url, control.url)
        result = get_action("etax.confirm_external")(actx(agency, scratch))
    assert result.ok and result.output["verdict"] == "external"
    assert all(r["source"] == "live" and r["status"] == 502 for r in result.output["portal_results"])
    assert all(r["ok"] for r in result.output["control_results"])
    log = src.read_probe_log(agency)
    assert len(log[log["at"] >= pd_now_floor()]) >= 4  # the probes were logged


def pd_now_floor():
    import pandas as pd

    return pd.Timestamp(datetime.now(timezone.utc) - timedelta(minutes=1))


def test_confirm_external_refuses_when_everything_fails(agency, scratch):
    dead = f"http://127.0.0.1:{free_port()}"
    point_targets(agency, dead, dead)
    with pytest.raises(ActionFailed, match="every control target fails too") as err:
        get_action("etax.confirm_external")(actx(agency, scratch))
    assert err.value.output["verdict"] == "our_network"


def test_confirm_external_uses_the_log_for_targets_that_are_not_live(agency, scratch):
    now = datetime.now(timezone.utc)
    get_injector("etax.inject_outage").inject(InjectionContext(agency=agency, resource="etax:default", now=now),
                                              minutes=30)
    result = get_action("etax.confirm_external")(actx(agency, scratch, now=now))
    assert result.output["verdict"] == "external"
    assert {r["source"] for r in result.output["portal_results"]} == {"log"}


def test_queue_then_retry_when_the_portal_returns(agency, scratch):
    now = datetime.now(timezone.utc)
    period = src.current_period(now, agency.tz)
    unfiled = src.unfiled_returns(agency, period)
    if unfiled.empty:  # make sure there is something to queue
        from ledgerguard.sample.datasets.probes import plant_filing_status

        plant_filing_status(agency, period, agency.client_ids[:2])
        unfiled = src.unfiled_returns(agency, period)
    first = get_action("filing.queue")(actx(agency, scratch, now=now))
    assert first.ok and first.output["newly_queued"] == len(unfiled)
    again = get_action("filing.queue")(actx(agency, scratch, now=now))
    assert again.output["newly_queued"] == 0 and again.output["already_queued"] == len(unfiled)  # idempotent
    assert len(read_queue(agency)) == len(unfiled) and queue_path(agency).is_file()
    with HttpStub([502]) as portal:
        point_targets(agency, portal.url)
        with pytest.raises(ActionFailed, match="still not answering"):
            get_action("filing.retry")(actx(agency, scratch))
        assert {r["status"] for r in read_queue(agency)} == {"queued"}
        portal.status = 200
        result = get_action("filing.retry")(actx(agency, scratch))
    assert result.ok and result.output["marked_ready"] == len(unfiled)
    assert {r["status"] for r in read_queue(agency)} == {"ready"}


def test_dry_run_changes_nothing(agency, scratch):
    result = get_action("filing.queue")(ActionContext(agency=agency, resource="etax:default", scratch_dir=scratch,
                                                      dry_run=True))
    assert result.output["dry_run"] and not queue_path(agency).exists()
