from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ledgerguard.agency import AgencyDataError, UnknownClientError
from ledgerguard.calendar import SHANGHAI
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.sources import certificates as certs

NOW = datetime.now(timezone.utc)
DETECTORS = ["credential.cert_expiry", "credential.login_failures"]


def detect(agency, detector_id, scratch, resource="credential:all", now=NOW, **params):
    ctx = DetectionContext(agency=agency, resource=resource, params=params, now=now, scratch_dir=scratch)
    return get_detector(detector_id).detect(ctx)


def inject(agency, injector_id, resource="credential:all", now=NOW, **kwargs):
    ctx = InjectionContext(agency=agency, resource=resource, now=now, seed=1)
    injector = get_injector(injector_id)
    return injector, ctx, injector.inject(ctx, **kwargs)


@pytest.mark.parametrize("detector_id", DETECTORS)
def test_quiet_on_healthy_agency(agency, scratch, detector_id):
    result = detect(agency, detector_id, scratch)
    assert result.finding is None, result.finding
    assert result.clear_reason
    cid = agency.client_ids[0]
    assert detect(agency, detector_id, scratch, resource=f"credential:{cid}").finding is None


@pytest.mark.parametrize("detector_id", DETECTORS)
def test_resource_errors(agency, scratch, detector_id):
    with pytest.raises(ValueError, match="credential:<id>"):
        detect(agency, detector_id, scratch, resource="ukey:C0001")
    with pytest.raises(UnknownClientError):
        detect(agency, detector_id, scratch, resource="credential:C9999")


def test_expiring_before_the_november_deadline(agency, scratch):
    # Scenario of the catalog: 2026-11-03 10:00, a UKey expiring in 5 days, before the 11-16 deadline.
    now = datetime(2026, 11, 3, 10, tzinfo=SHANGHAI)
    cid = agency.client_ids[1]
    injector, ctx, report = inject(agency, "credential.inject_expiring", f"credential:{cid}", now=now, days=5)
    f = detect(agency, "credential.cert_expiry", scratch, now=now).finding
    assert f is not None
    for name in COMMON_FACTS:
        assert name in f.facts
    assert f.facts["days_to_expiry"] == 5 and f.facts["expires_before_deadline"] is True
    assert f.facts["affected_clients"] == [cid] and f.facts["deadline_at"].startswith("2026-11-16T23:59:59")
    assert f.facts["credentials"][0]["serial"].startswith("*")  # serials are masked in facts
    json.dumps(f.facts)
    # the same credential 40 days out: outside warn_days and after the next deadline → quiet
    injector.restore(ctx, report)
    inject(agency, "credential.inject_expiring", f"credential:{cid}", now=now, days=40)
    assert detect(agency, "credential.cert_expiry", scratch, now=now).finding is None
    # …but 20 days out is past the 11-16 deadline yet within warn_days: a finding, not urgent
    inject(agency, "credential.inject_expiring", f"credential:{cid}", now=now, days=20)
    g = detect(agency, "credential.cert_expiry", scratch, now=now).finding
    assert g is not None and g.facts["expires_before_deadline"] is False and g.facts["days_to_expiry"] == 20


def test_expired_credential(agency, scratch):
    cid = agency.client_ids[0]
    inject(agency, "credential.inject_expiring", f"credential:{cid}", days=-2, kind="电子营业执照")
    f = detect(agency, "credential.cert_expiry", scratch, resource=f"credential:{cid}").finding
    assert f.facts["days_to_expiry"] <= -2 and f.facts["expired"] == 1


def test_login_failures(agency, scratch):
    cid = agency.client_ids[2]
    inject(agency, "credential.inject_login_failures", f"credential:{cid}", count=4)
    f = detect(agency, "credential.login_failures", scratch, min_failures=3, window_minutes=60).finding
    assert f is not None and f.facts["login_failures"] >= 4 and f.facts["affected_clients"] == [cid]
    assert detect(agency, "credential.login_failures", scratch, min_failures=30).finding is None
    other = agency.client_ids[3]
    assert detect(agency, "credential.login_failures", scratch, resource=f"credential:{other}").finding is None


def test_bad_inventory(agency, scratch):
    path = certs.inventory_path(agency)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace(lines[2].split(",")[3], "next year")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AgencyDataError) as exc:
        detect(agency, "credential.cert_expiry", scratch)
    assert exc.value.field == "not_after" and "line 3" in str(exc.value)
    lines[2] = "C9999,税务UKey,ABC,2027-01-01,x"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AgencyDataError, match="unknown client 'C9999'"):
        detect(agency, "credential.cert_expiry", scratch)


def test_catalog_scenario_graded_from_the_inventory(agency, scratch):
    from ledgerguard.catalog import load_catalog
    from ledgerguard.classification.service import classify
    from ledgerguard.config import PROJECT_ROOT
    from ledgerguard.response.detection import run_detectors

    now = datetime(2026, 11, 3, 10, tzinfo=SHANGHAI)
    cid = next(c for c in agency.client_ids if not agency.is_vip(c))
    inject(agency, "credential.inject_expiring", f"credential:{cid}", now=now, days=5)
    catalog = load_catalog(PROJECT_ROOT / "catalog")
    entry = catalog.get("credential_expiry")
    detection = run_detectors(entry=entry, agency=agency, resource=f"credential:{cid}", scratch_dir=scratch, now=now)
    a = classify(entry=entry, rubric=catalog.rubric, facts=detection.facts, detected_at=now,
                 calendar=catalog.calendar)
    assert a.level.value == 3
    assert {"expires_before_deadline", "expiring_within_7_days"} <= {line.rule for line in a.fired}
    assert "file_on_time" in {o.id for o in a.obligations}
