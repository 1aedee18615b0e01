"""The probe source: targets file, live probes against a real local HTTP server, the probe log."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.embedded import free_port
from ledgerguard.sources import probes as src
from tests.support.http_stub import HttpStub


def target(url: str, **kw) -> src.ProbeTarget:
    return src.ProbeTarget(name=kw.pop("name", "t1"), kind="etax", portal="shanghai", url=url,
                           timeout_s=kw.pop("timeout_s", 0.5), **kw)


def test_probe_records_ok_then_502_then_timeout_without_raising():
    with HttpStub([200, 502, "sleep"]) as server:
        t = target(server.url + "/login")
        ok = src.probe(t)
        bad = src.probe(t)
        slow = src.probe(t)
    assert ok.ok and ok.status == 200 and ok.error == "" and ok.elapsed_ms > 0
    assert not bad.ok and bad.status == 502 and bad.error == "http_502"
    assert not slow.ok and slow.status is None and slow.error == "timeout"
    assert slow.elapsed_ms >= 400


def test_probe_connection_refused_and_bad_url_are_results():
    refused = src.probe(target(f"http://127.0.0.1:{free_port()}/"))
    assert not refused.ok and refused.error == "connect_error" and refused.status is None
    unresolvable = src.probe(target("http://etax.sample.invalid/"))
    assert not unresolvable.ok and unresolvable.error in {"dns_error", "connect_error"}


def test_expect_status_list_accepts_a_redirect():
    with HttpStub([302]) as server:
        assert src.probe(target(server.url, expect_status=[200, 302])).ok
        assert not src.probe(target(server.url)).ok


def test_sample_targets_and_healthy_log(agency):
    cfg = src.load_targets(agency)
    assert cfg.default_portal in cfg.portals and cfg.services == ["bookkeeping"]
    assert not any(t.live for t in cfg.targets)
    assert {t.endpoint for t in cfg.for_portal("default")} == {"login", "filing"}
    assert cfg.controls()
    log = src.read_probe_log(agency)
    assert set(log.columns) >= set(src.PROBE_LOG_COLUMNS)
    assert log["ok"].all() and (log["status"] == 200).all()
    assert (log["at"].max() - log["at"].min()) >= timedelta(hours=23)


def test_sweep_appends_live_results_to_the_log(agency):
    path = src.targets_path(agency)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    before = len(src.read_probe_log(agency))
    with HttpStub([200, 502]) as server:
        spec["targets"][0].update(url=server.url + "/sso/login", live=True, timeout_s=1)
        path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
        now = datetime.now(timezone.utc)
        first = src.sweep(agency, now=now)
        second = src.sweep(agency, now=now + timedelta(minutes=5))
    assert [r.ok for r in first + second] == [True, False]
    log = src.read_probe_log(agency)
    assert len(log) == before + 2
    tail = log.tail(2)
    assert list(tail["target"]) == [spec["targets"][0]["name"]] * 2
    assert list(tail["ok"]) == [True, False] and list(tail["error"]) == ["", "http_502"]


def test_trailing_failures_counts_back_to_the_last_ok(agency):
    name = "x"
    now = datetime(2026, 10, 26, 8, 40, tzinfo=timezone.utc)
    rows = []
    for i, ok in enumerate([True, True, False, True, False, False, False]):
        rows.append({"target": name, "at": (now - timedelta(minutes=5 * (6 - i))).isoformat(), "ok": str(ok).lower(),
                     "status": "200" if ok else "502", "elapsed_ms": "10", "error": "" if ok else "http_502"})
    src.write_probe_log(src.probe_log_path(agency), rows)
    run = src.trailing_failures(src.read_probe_log(agency), name, now=now)
    assert run.failures == 3 and run.minutes == 10
    assert run.last_ok_at == now - timedelta(minutes=15)
    assert run.error_kinds == ["http_502"]


@pytest.mark.parametrize("mutate, field", [
    (lambda s: s["targets"][0].update(kind="ftp"), "targets.0.kind"),
    (lambda s: s["targets"][0].update(url="etax.example"), "targets.0.url"),
    (lambda s: s["targets"][1].update(name=s["targets"][0]["name"]), "targets.1.name"),
    (lambda s: s["targets"][0].pop("portal"), "targets.0"),
    (lambda s: s.update(default_portal="atlantis"), "default_portal"),
])
def test_bad_targets_name_file_and_field(agency, mutate, field):
    path = src.targets_path(agency)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    mutate(spec)
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    with pytest.raises(AgencyDataError) as err:
        src.load_targets(agency)
    assert err.value.field == field and "targets.yaml" in str(err.value)


def test_bad_probe_log_names_line_and_field(agency):
    path = src.probe_log_path(agency)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace("true", "maybe", 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AgencyDataError) as err:
        src.read_probe_log(agency)
    assert err.value.field == "ok" and "line 4" in str(err.value)
    path.write_text("target,at\n", encoding="utf-8")
    with pytest.raises(AgencyDataError) as err:
        src.read_probe_log(agency)
    assert err.value.field == "ok"


def test_unknown_portal_is_a_clear_error(agency):
    with pytest.raises(AgencyDataError, match="atlantis"):
        src.load_targets(agency).for_portal("atlantis")


def test_calendar_puts_the_october_2026_deadline_on_the_26th():
    from ledgerguard.calendar import SHANGHAI

    cal = src.filing_calendar()
    assert src.period_deadline(cal, "2026-09") == datetime(2026, 10, 26, 23, 59, 59, tzinfo=SHANGHAI)
    assert src.current_period(datetime(2026, 10, 26, 8, 40, tzinfo=timezone.utc), SHANGHAI) == "2026-09"
    assert src.current_period(datetime(2026, 1, 5, tzinfo=timezone.utc), SHANGHAI) == "2025-12"
