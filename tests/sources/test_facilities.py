"""Facility and vendor sources on agencies generated at chosen moments (working hours, night), and
every detector of the four catalog entries quiet on a fresh agency."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ledgerguard.calendar import SHANGHAI
from ledgerguard.catalog import load_catalog
from ledgerguard.config import PROJECT_ROOT
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.response.detection import run_detectors
from ledgerguard.sample import generate_agency
from ledgerguard.sources import facilities as fac

WORKING = datetime(2026, 11, 5, 10, 0, tzinfo=SHANGHAI)      # a Thursday
NIGHT = datetime(2026, 11, 5, 23, 30, tzinfo=SHANGHAI)
HOLIDAY = datetime(2026, 10, 2, 11, 0, tzinfo=SHANGHAI)     # National Day holiday


@pytest.fixture(scope="module", params=[WORKING, NIGHT, HOLIDAY], ids=["working", "night", "holiday"])
def generated(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("fac") / "agency"
    return generate_agency(root, clients=6, nights=1, seed=5, now=request.param.astimezone(timezone.utc)), request.param


def test_presence_matches_the_hour(generated):
    agency, now = generated
    df = fac.read_presence(agency)
    on_duty = df["clocked_in_at"].notna() & df["clocked_out_at"].isna()
    assert len(df) > 0 and df["staff_id"].is_unique
    assert on_duty.all() if now == WORKING else not on_duty.any()
    assert (df["clocked_in_at"].dropna() <= now).all() and (df["last_seen_at"] <= now).all()


@pytest.mark.parametrize("type_id, resource", [("etax_outage", "etax:default"), ("saas_outage", "saas:bookkeeping"),
                                               ("office_outage", "office:main"),
                                               ("vendor_breach", "vendor:payroll-cloud")])
def test_every_detector_is_quiet_on_a_fresh_agency(generated, tmp_path, type_id, resource):
    agency, now = generated
    entry = load_catalog(PROJECT_ROOT / "catalog").get(type_id)
    detection = run_detectors(entry=entry, agency=agency, resource=resource, scratch_dir=tmp_path, now=now)
    assert not detection.findings, [f.summary for f in detection.findings]
    assert len(detection.clear_reasons) == len(entry.detectors)
    assert not any("could not run" in r for r in detection.clear_reasons), detection.clear_reasons


def test_staff_offline_during_working_hours(generated, tmp_path):
    agency, now = generated
    if now != WORKING:
        pytest.skip("working-hours agency only")
    ctx = InjectionContext(agency=agency, resource="office:main", now=now + timedelta(minutes=2))
    report = get_injector("facility.inject_staff_offline").inject(ctx, pct=50, minutes=40)
    f = get_detector("facility.staff_offline").detect(DetectionContext(
        agency=agency, resource="office:main", now=ctx.now, scratch_dir=tmp_path, params={"min_pct": 30})).finding
    assert f is not None and f.facts["staff_offline_pct"] >= 50 and f.facts["outage_minutes"] == 40
    get_injector("facility.inject_staff_offline").restore(ctx, report)
