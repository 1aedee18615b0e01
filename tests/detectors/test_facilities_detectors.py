"""Office facility detectors on real alarm and presence exports, and their injectors."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.catalog import load_catalog
from ledgerguard.classification.service import classify
from ledgerguard.config import PROJECT_ROOT
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.response.detection import run_detectors
from ledgerguard.sources import facilities as src

DETECTORS = ["facility.ups_alarm", "facility.isp_alarm", "facility.staff_offline"]


def detect(agency, detector_id, scratch, now, resource="office:main", **params):
    return get_detector(detector_id).detect(DetectionContext(agency=agency, resource=resource, params=params,
                                                             now=now, scratch_dir=scratch))


def inject(agency, injector_id, now, **kw):
    ctx = InjectionContext(agency=agency, resource="office:main", now=now)
    return get_injector(injector_id).inject(ctx, **kw), ctx


@pytest.mark.parametrize("detector_id", DETECTORS)
def test_quiet_on_healthy_agency(agency, scratch, detector_id):
    r = detect(agency, detector_id, scratch, datetime.now(timezone.utc))
    assert r.finding is None and "main" in r.clear_reason


@pytest.mark.parametrize("detector_id", DETECTORS)
def test_wrong_resource_and_unknown_site(agency, scratch, detector_id):
    now = datetime.now(timezone.utc)
    with pytest.raises(ValueError, match="office:<name>"):
        detect(agency, detector_id, scratch, now, resource="site:main")
    with pytest.raises(AgencyDataError, match="unknown site 'annex'"):
        detect(agency, detector_id, scratch, now, resource="office:annex")


def test_power_cut_fires_ups_alarm_and_restore_clears(agency, scratch):
    now = datetime.now(timezone.utc)
    report, ctx = inject(agency, "facility.inject_power_cut", now, minutes=45, battery_low=True)
    f = detect(agency, "facility.ups_alarm", scratch, now).finding
    assert f is not None and f.facts["outage_minutes"] == 45 and f.facts["power_outage"] is True
    assert f.facts["battery_low"] is True and f.facts["devices_down"] == ["ups-1"]
    for name in COMMON_FACTS:
        assert name in f.facts
    assert len(f.evidence) == 2 and "hours_to_deadline" in f.facts
    json.dumps(f.facts)
    assert detect(agency, "facility.isp_alarm", scratch, now).finding is None
    assert detect(agency, "facility.ups_alarm", scratch, now, min_minutes=60).finding is None
    get_injector("facility.inject_power_cut").restore(ctx, report)
    assert detect(agency, "facility.ups_alarm", scratch, now).finding is None


def test_isp_needs_every_link_down_unless_told_otherwise(agency, scratch):
    now = datetime.now(timezone.utc)
    src.append_alarms(agency, [{"at": now.isoformat(timespec="seconds"), "site": "main", "source": "isp",
                                "device": "isp-telecom", "event": "link_down", "detail": "主线路中断"}])
    r = detect(agency, "facility.isp_alarm", scratch, now)
    assert r.finding is None and "backup is up" in r.clear_reason
    f = detect(agency, "facility.isp_alarm", scratch, now, require_all=False).finding
    assert f is not None and f.facts["all_links_down"] is False and f.facts["links_down"] == 1
    report, ctx = inject(agency, "facility.inject_isp_down", now, minutes=30)
    f = detect(agency, "facility.isp_alarm", scratch, now).finding
    assert f is not None and f.facts["all_links_down"] is True and f.facts["outage_minutes"] == 30


def test_staff_offline_fires_and_grades_most_staff_offline(agency, scratch):
    now = datetime.now(timezone.utc)
    report, ctx = inject(agency, "facility.inject_staff_offline", now, pct=60, minutes=30)
    f = detect(agency, "facility.staff_offline", scratch, now, min_pct=30).finding
    assert f is not None and f.facts["staff_offline_pct"] >= 60
    assert f.facts["offline_staff"] == sorted(report.changes["offline_staff"])
    assert f.facts["outage_minutes"] == 30
    assert detect(agency, "facility.staff_offline", scratch, now, min_pct=90).finding is None
    catalog = load_catalog(PROJECT_ROOT / "catalog")
    entry = catalog.get("office_outage")
    detection = run_detectors(entry=entry, agency=agency, resource="office:main", scratch_dir=scratch, now=now)
    assert [x.detector for x in detection.findings] == ["facility.staff_offline"]
    a = classify(entry=entry, rubric=catalog.rubric, facts=detection.facts, detected_at=now, calendar=catalog.calendar)
    assert "most_staff_offline" in {line.rule for line in a.fired}
    assert not a.obligations or all("PIPL" not in o.law for o in a.obligations)
    get_injector("facility.inject_staff_offline").restore(ctx, report)
    assert detect(agency, "facility.staff_offline", scratch, now).finding is None


def test_bad_alarm_line_names_line_and_field(agency, scratch):
    path = src.alarms_path(agency)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"at": "2026-11-05T10:00:00+08:00", "site": "main", "source": "ups", "device": "ups-1", '
                 '"event": "exploded"}\n')
    n = len(path.read_text(encoding="utf-8").splitlines())
    with pytest.raises(AgencyDataError, match=f"line {n}: event 'exploded'") as err:
        detect(agency, "facility.ups_alarm", scratch, datetime.now(timezone.utc))
    assert err.value.field == "event"


def test_bad_presence_timestamp_names_line(agency, scratch):
    path = src.presence_path(agency)
    lines = path.read_text(encoding="utf-8").splitlines()
    cells = lines[2].split(",")
    cells[-1] = "soon"
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AgencyDataError, match="line 3") as err:
        detect(agency, "facility.staff_offline", scratch, datetime.now(timezone.utc))
    assert err.value.field == "exported_at"


def test_power_cut_on_deadline_day_grades_level_two(tmp_path):
    """The catalog's power_cut_deadline_day: 3 h on battery, 90 % of staff offline, on 2026-11-16."""
    from ledgerguard.calendar import SHANGHAI
    from ledgerguard.models import Level
    from ledgerguard.sample import generate_agency

    now = datetime(2026, 11, 16, 10, 0, tzinfo=SHANGHAI)
    agency = generate_agency(tmp_path / "agency", clients=5, nights=1, seed=4, now=now.astimezone(timezone.utc))
    catalog = load_catalog(PROJECT_ROOT / "catalog")
    entry = catalog.get("office_outage")
    quiet = run_detectors(entry=entry, agency=agency, resource="office:main", scratch_dir=tmp_path, now=now)
    assert not quiet.findings and any("0 of" in r for r in quiet.clear_reasons)  # everyone on duty is online
    ctx = InjectionContext(agency=agency, resource="office:main", now=now)
    get_injector("facility.inject_power_cut").inject(ctx, minutes=180)
    get_injector("facility.inject_staff_offline").inject(ctx, pct=90, minutes=170)
    detection = run_detectors(entry=entry, agency=agency, resource="office:main", scratch_dir=tmp_path, now=now)
    assert {f.detector for f in detection.findings} == {"facility.ups_alarm", "facility.staff_offline"}
    assert detection.facts["outage_minutes"] == 180 and detection.facts["staff_offline_pct"] >= 90
    a = classify(entry=entry, rubric=catalog.rubric, facts=detection.facts, detected_at=now, calendar=catalog.calendar)
    assert {"most_staff_offline", "beyond_rto", "deadline_24h"} <= {line.rule for line in a.fired}
    assert a.level == Level.TWO and a.obligations == []
