"""E-tax and SaaS detectors on real files, and their injectors; live probes hit a real local server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.embedded import free_port
from ledgerguard.sources import probes as src
from tests.support.http_stub import HttpStub

ETAX = ["etax.probe", "etax.filing_errors"]
SAAS = ["saas.status_page", "saas.api_errors", "saas.sync_lag"]


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def detect(agency, detector_id, resource, scratch, now=None, **params):
    ctx = DetectionContext(agency=agency, resource=resource, params=params, now=now or now_utc(),
                           scratch_dir=scratch)
    return get_detector(detector_id).detect(ctx)


def inject(agency, injector_id, resource, now=None, **kwargs):
    ctx = InjectionContext(agency=agency, resource=resource, now=now or now_utc())
    return get_injector(injector_id).inject(ctx, **kwargs), ctx


def edit_targets(agency, fn):
    path = src.targets_path(agency)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(spec)
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return spec


@pytest.mark.parametrize("detector_id", ETAX)
def test_etax_quiet_on_healthy_agency(agency, scratch, detector_id):
    result = detect(agency, detector_id, "etax:default", scratch)
    assert result.finding is None and result.clear_reason
    assert src.load_targets(agency).default_portal in result.clear_reason


@pytest.mark.parametrize("detector_id", SAAS)
def test_saas_quiet_on_healthy_agency(agency, scratch, detector_id):
    result = detect(agency, detector_id, "saas:bookkeeping", scratch)
    assert result.finding is None and result.clear_reason


@pytest.mark.parametrize("detector_id, resource", [("etax.probe", "saas:bookkeeping"), ("etax.probe", "shanghai"),
                                                   ("saas.api_errors", "etax:default"), ("saas.sync_lag", "saas:")])
def test_wrong_resource_form_is_a_value_error(agency, scratch, detector_id, resource):
    with pytest.raises(ValueError, match="not of the form"):
        detect(agency, detector_id, resource, scratch)


def test_unknown_portal_names_the_targets_file(agency, scratch):
    with pytest.raises(AgencyDataError, match="targets.yaml.*atlantis"):
        detect(agency, "etax.probe", "etax:atlantis", scratch)


def test_inject_outage_fires_etax_probe_and_restore_quiets_it(agency, scratch):
    now = now_utc()
    report, ctx = inject(agency, "etax.inject_outage", "etax:default", now=now, minutes=60)
    assert report.changes["failed_probes"] == 2 * 13
    f = detect(agency, "etax.probe", "etax:default", scratch, now=now, fail_minutes=15).finding
    assert f is not None and f.detector == "etax.probe"
    for name in COMMON_FACTS:
        assert name in f.facts
    assert f.facts["probe_failed_minutes"] == 60 and f.facts["outage_minutes"] == 60
    assert f.facts["failures"] == 26
    assert set(f.facts["error_kinds"]) == {"http_502", "timeout"}
    assert f.facts["outage_external"] is True  # the control endpoints kept answering
    first = datetime.fromisoformat(f.facts["first_failure_at"])
    last_ok = datetime.fromisoformat(f.facts["last_ok_at"])
    assert last_ok < first and abs((now - first).total_seconds() - 3600) < 1
    unfiled = sorted(set(src.unfiled_returns(agency, src.current_period(now, agency.tz))["client_id"]))
    assert f.facts["clients_unfiled"] == len(unfiled) and f.facts["affected_clients"] == unfiled
    assert "hours_to_deadline" in f.facts and "deadline_at" in f.facts
    http = [e for e in f.evidence if e.kind == "http"]
    assert sum(1 for e in http if not e.data["ok"]) == 26  # every failed probe is kept as evidence
    json.dumps(f.facts)
    # too short for a higher threshold
    assert detect(agency, "etax.probe", "etax:default", scratch, now=now, fail_minutes=90).finding is None
    get_injector("etax.inject_outage").restore(ctx, report)
    assert detect(agency, "etax.probe", "etax:default", scratch, now=now).finding is None
    assert src.read_probe_log(agency)["ok"].all()


def test_live_target_is_probed_now_and_logged(agency, scratch):
    """The login endpoint answers 200 once, then 502: failures accumulate in the log until they
    cover fail_minutes."""
    base = now_utc()
    with HttpStub([200, 502]) as server:
        spec = edit_targets(agency, lambda s: [t.update(url=server.url + "/sso/login", live=True, timeout_s=2)
                                               for t in s["targets"] if t.get("endpoint") == "login"
                                               and t["role"] == "primary"])
        name = next(t["name"] for t in spec["targets"] if t.get("endpoint") == "login" and t["role"] == "primary")
        results = [detect(agency, "etax.probe", "etax:default", scratch, now=base + timedelta(minutes=5 * i),
                          fail_minutes=15) for i in range(5)]  # t+0 .. t+20 min
    assert server.hits == 5
    assert [r.found for r in results] == [False, False, False, False, True]
    assert "1 failure(s) over 0 min" in results[1].clear_reason
    f = results[-1].finding
    assert f.facts["probe_failed_minutes"] == 15 and f.facts["error_kinds"] == ["http_502"]
    assert f.facts["endpoints_down"] == [name] and f.facts["failures"] == 4
    assert f.facts["last_ok_at"] == base.isoformat(timespec="seconds")
    assert f.facts["live_probes"][0]["status"] == 502
    log = src.read_probe_log(agency)
    live = log[(log["target"] == name) & (log["at"] >= base.replace(microsecond=0))]
    assert list(live["ok"]) == [True, False, False, False, False]


def test_filing_errors_injector_fires_and_restores(agency, scratch):
    now = now_utc()
    assert detect(agency, "etax.filing_errors", "etax:default", scratch, now=now).finding is None
    report, ctx = inject(agency, "etax.inject_filing_errors", "etax:default", now=now, count=4, minutes=20)
    f = detect(agency, "etax.filing_errors", "etax:default", scratch, now=now, min_errors=3, window_minutes=30).finding
    assert f is not None and f.facts["filing_errors"] == 4
    assert sum(f.facts["filing_error_codes"].values()) == 4 and len(f.evidence) == 4
    assert detect(agency, "etax.filing_errors", "etax:default", scratch, now=now, min_errors=5).finding is None
    get_injector("etax.inject_filing_errors").restore(ctx, report)
    assert detect(agency, "etax.filing_errors", "etax:default", scratch, now=now).finding is None


def test_bad_filing_error_export_names_line(agency, scratch):
    path = agency.data_file(*src.FILING_ERRORS_FILE)
    path.write_text("at,portal,client_id,tax,error_code,message\nyesterday,x,C0001,vat,E,m\n", encoding="utf-8")
    with pytest.raises(AgencyDataError, match="line 2") as err:
        detect(agency, "etax.filing_errors", "etax:default", scratch)
    assert err.value.field == "at"


def test_status_page_injector_fires_with_outage_minutes(agency, scratch):
    now = now_utc()
    report, ctx = inject(agency, "saas.inject_status", "saas:bookkeeping", now=now, indicator="major", minutes=300)
    f = detect(agency, "saas.status_page", "saas:bookkeeping", scratch, now=now).finding
    assert f is not None and f.facts["status_indicator"] == "major" and f.facts["vendor_acknowledged"] is True
    assert f.facts["outage_minutes"] == 300
    assert f.facts["clients_affected"] == len(agency.client_ids)
    get_injector("saas.inject_status").restore(ctx, report)
    assert detect(agency, "saas.status_page", "saas:bookkeeping", scratch, now=now).finding is None


def test_status_page_live_fetch_from_a_real_server(agency, scratch):
    body = {"page": {"id": "x", "name": "SaaS"}, "status": {"indicator": "critical", "description": "Major Outage"}}
    with HttpStub([200], json_body=body) as server:
        edit_targets(agency, lambda s: [t.update(status_url=server.url + "/api/v2/status.json", live=True)
                                        for t in s["targets"] if t["kind"] == "saas"])
        # the API target is live too and points at the same server, which answers 200
        edit_targets(agency, lambda s: [t.update(url=server.url + "/v1/health")
                                        for t in s["targets"] if t["kind"] == "saas"])
        f = detect(agency, "saas.status_page", "saas:bookkeeping", scratch).finding
    assert f is not None and f.facts["status_indicator"] == "critical"
    saved = src.read_status_snapshot(agency, "bookkeeping")
    assert saved["status"]["indicator"] == "critical" and saved["url"].endswith("/api/v2/status.json")


def test_status_page_unreachable_is_not_an_outage_by_itself(agency, scratch):
    edit_targets(agency, lambda s: [t.update(status_url=f"http://127.0.0.1:{free_port()}/s.json", live=True,
                                             timeout_s=1) for t in s["targets"] if t["kind"] == "saas"])
    r = detect(agency, "saas.status_page", "saas:bookkeeping", scratch)
    assert r.finding is None and "connect_error" in r.clear_reason


def test_api_errors_injector_fires(agency, scratch):
    now = now_utc()
    report, ctx = inject(agency, "saas.inject_api_errors", "saas:bookkeeping", now=now, minutes=30)
    f = detect(agency, "saas.api_errors", "saas:bookkeeping", scratch, now=now).finding
    assert f is not None and f.facts["api_5xx_pct"] == 100 and f.facts["outage_minutes"] == 30
    assert f.facts["clients_affected"] == len(agency.client_ids)
    assert set(f.facts["error_kinds"]) == {"http_503", "timeout"}
    get_injector("saas.inject_api_errors").restore(ctx, report)
    assert detect(agency, "saas.api_errors", "saas:bookkeeping", scratch, now=now).finding is None


def test_sync_lag_injector_fires_for_the_lagging_clients(agency, scratch):
    now = now_utc()
    report, ctx = inject(agency, "saas.inject_sync_lag", "saas:bookkeeping", now=now, lag_minutes=180, clients=2)
    f = detect(agency, "saas.sync_lag", "saas:bookkeeping", scratch, now=now, max_lag_minutes=60).finding
    assert f is not None and f.facts["sync_lag_minutes"] == 180
    assert f.facts["affected_clients"] == sorted(report.changes["clients"]) and f.facts["clients_affected"] == 2
    assert detect(agency, "saas.sync_lag", "saas:bookkeeping", scratch, now=now, max_lag_minutes=200).finding is None
    get_injector("saas.inject_sync_lag").restore(ctx, report)
    assert detect(agency, "saas.sync_lag", "saas:bookkeeping", scratch, now=now).finding is None


def test_sync_status_with_unknown_client_names_line(agency, scratch):
    path = src.sync_status_path(agency)
    text = path.read_text(encoding="utf-8").replace("C0002,", "C9999,", 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AgencyDataError, match="line 3: unknown client 'C9999'"):
        detect(agency, "saas.sync_lag", "saas:bookkeeping", scratch)


def test_official_extension_moves_the_deadline_and_drops_the_late_filing_duty(agency, scratch):
    from ledgerguard.catalog import load_catalog
    from ledgerguard.classification.service import classify
    from ledgerguard.config import PROJECT_ROOT
    from ledgerguard.sample.datasets.probes import plant_filing_status

    now = now_utc()
    period = src.current_period(now, agency.tz)
    plant_filing_status(agency, period, agency.client_ids[:3])
    inject(agency, "etax.inject_outage", "etax:default", now=now, minutes=150)
    portal = src.load_targets(agency).default_portal
    f = detect(agency, "etax.probe", "etax:default", scratch, now=now).finding
    assert f.facts["official_extension"] is False and f.facts["clients_unfiled"] == 3
    agency.data_file(*src.NOTICES_FILE).write_text(yaml.safe_dump({"notices": [
        {"portal": portal, "period": period, "new_deadline": "2099-12-31", "title": "关于延长申报期限的通知",
         "published_at": now.isoformat()}]}, allow_unicode=True), encoding="utf-8")
    g = detect(agency, "etax.probe", "etax:default", scratch, now=now).finding
    assert g.facts["official_extension"] is True and g.facts["deadline_at"].startswith("2099-12-31T23:59:59")
    assert g.facts["statutory_consequence"] is False
    catalog = load_catalog(PROJECT_ROOT / "catalog")
    a = classify(entry=catalog.get("etax_outage"), rubric=catalog.rubric, facts=g.facts, detected_at=now,
                 calendar=catalog.calendar)
    ids = {o.id for o in a.obligations}
    assert not ids & {"file_on_time", "extension_application", "late_payment_risk"}
    assert "long_outage" in {line.rule for line in a.fired}  # 150 min with clients unfiled


def test_when_the_controls_fail_too_the_outage_is_not_called_external(agency, scratch):
    from ledgerguard.detectors.probes import inject_probe_failures

    now = now_utc()
    cfg = src.load_targets(agency)
    inject(agency, "etax.inject_outage", "etax:default", now=now, minutes=30, controls_ok=False)
    inject_probe_failures(agency, [t.name for t in cfg.controls()], now=now, minutes=30, interval_minutes=5,
                          statuses=["timeout"])
    f = detect(agency, "etax.probe", "etax:default", scratch, now=now).finding
    assert f.facts["outage_external"] is False and "check our network" in f.summary


def test_saas_outage_beyond_rto_claims_the_sla(agency, scratch):
    from ledgerguard.catalog import load_catalog
    from ledgerguard.classification.service import classify
    from ledgerguard.config import PROJECT_ROOT
    from ledgerguard.response.detection import run_detectors

    now = now_utc()
    inject(agency, "saas.inject_status", "saas:bookkeeping", now=now, minutes=300)
    inject(agency, "saas.inject_api_errors", "saas:bookkeeping", now=now, minutes=60)
    catalog = load_catalog(PROJECT_ROOT / "catalog")
    entry = catalog.get("saas_outage")
    detection = run_detectors(entry=entry, agency=agency, resource="saas:bookkeeping", scratch_dir=scratch, now=now)
    assert {f.detector for f in detection.findings} == {"saas.status_page", "saas.api_errors"}
    assert detection.facts["outage_minutes"] == 300  # the longest view wins
    a = classify(entry=entry, rubric=catalog.rubric, facts=detection.facts, detected_at=now, calendar=catalog.calendar)
    assert "beyond_rto" in {line.rule for line in a.fired}
    assert "contract_sla" in {o.id for o in a.obligations}
