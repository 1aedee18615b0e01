from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ledgerguard import backups as bk
from ledgerguard.detectors import (
    DetectionContext,
    InjectionContext,
    get_detector,
    get_injector,
    known_detectors,
    known_injectors,
)
from ledgerguard.detectors.base import COMMON_FACTS

BACKUP_DETECTORS = ["backup.age", "backup.checksum", "backup.test_restore"]


def detect(agency, detector_id, scratch, **params):
    ctx = DetectionContext(agency=agency, resource="backups:nightly", params=params,
                           now=datetime.now(timezone.utc), scratch_dir=scratch)
    return get_detector(detector_id).detect(ctx)


def inject(agency, injector_id, **kwargs):
    return get_injector(injector_id).inject(InjectionContext(agency=agency, resource="backups:nightly"), **kwargs)


def test_registry():
    assert set(BACKUP_DETECTORS) <= set(known_detectors())
    assert {"backup.stale", "backup.corrupt_file", "backup.break_command"} <= set(known_injectors())
    with pytest.raises(KeyError) as err:
        get_detector("backup.nope")
    assert "backup.nope" in str(err.value) and "backup.age" in str(err.value)
    with pytest.raises(KeyError) as err:
        get_injector("nope")
    assert "backup.stale" in str(err.value)
    assert get_detector("backup.age").emergency_type == "backup_failure"


@pytest.mark.parametrize("detector_id", BACKUP_DETECTORS)
def test_quiet_on_a_healthy_agency(agency, scratch, detector_id):
    result = detect(agency, detector_id, scratch)
    assert result.finding is None
    assert result.clear_reason


def test_quiet_reason_for_age_names_age_and_rpo(agency, scratch):
    reason = detect(agency, "backup.age", scratch).clear_reason
    assert "h old" in reason and "within RPO 24 h" in reason


def test_stale_by_age_fires_backup_age(agency, scratch):
    report = inject(agency, "backup.stale", hours_old=75)
    assert report.detector == "backup.age"
    result = detect(agency, "backup.age", scratch)
    f = result.finding
    assert f is not None and f.detector == "backup.age"
    for name in COMMON_FACTS:
        assert name in f.facts
    assert 74.9 < f.facts["backup_age_hours"] < 75.5
    assert f.facts["rpo_hours"] == 24 and f.facts["rpo_breached"] is True
    assert f.facts["control_failure"] is True
    # Stale backups expose every client but affect none yet (rubric: exposure never raises impact).
    assert f.facts["clients_exposed"] == 5 and sorted(f.facts["exposed_clients"]) == agency.client_ids
    assert f.facts["clients_affected"] == 0 and f.facts["vip"] is False
    assert f.facts["failed_sets_since"] == 0
    assert f.facts["newest_good_backup"] == bk.newest_good_backup(agency).stamp
    assert f.evidence and f.evidence[0].path
    json.dumps(f.facts)
    # a larger RPO from the catalog params makes it quiet again
    assert detect(agency, "backup.age", scratch, rpo_hours=100).finding is None


def test_stale_by_failed_sets_counts_them(agency, scratch):
    inject(agency, "backup.stale", sets=2)
    f = detect(agency, "backup.age", scratch).finding
    assert f is not None
    assert f.facts["failed_sets_since"] == 2
    assert f.facts["backup_age_hours"] > 24


def test_no_manifest_at_all_fires(agency, scratch):
    inject(agency, "backup.stale", sets=3, remove_manifest=True)
    f = detect(agency, "backup.age", scratch).finding
    assert f is not None and f.facts["newest_good_backup"] is None and f.facts["rpo_breached"]
    assert detect(agency, "backup.test_restore", scratch).finding is not None


def test_corrupt_file_fires_checksum_and_test_restore(agency, scratch):
    report = inject(agency, "backup.corrupt_file", client_id="C0003")
    assert report.changes["sha256_before"] != report.changes["sha256_after"]
    f = detect(agency, "backup.checksum", scratch).finding
    assert f is not None
    assert f.facts["checksum_mismatches"] == ["C0003.sqlite"]
    assert f.facts["checksum_mismatch_count"] == 1
    assert f.facts["exposed_clients"] == ["C0003"] and f.facts["clients_exposed"] == 1
    assert f.facts["control_failure"] is True
    assert any(e.kind == "checksum" and e.data["expected_sha256"] == report.changes["sha256_before"]
               for e in f.evidence)
    t = detect(agency, "backup.test_restore", scratch).finding
    assert t is not None and t.facts["test_restore_ok"] is False
    assert "C0003" in t.facts["exposed_clients"]
    assert any("checksum mismatch" in e for e in t.facts["test_restore_errors"])
    json.dumps(f.facts), json.dumps(t.facts)
    # undo makes both quiet again
    get_injector("backup.corrupt_file").restore(InjectionContext(agency=agency, resource="backups:nightly"), report)
    assert detect(agency, "backup.checksum", scratch).finding is None
    assert detect(agency, "backup.test_restore", scratch).finding is None


def test_break_command_is_restorable(agency):
    original = list(agency.config.backup_command)
    report = inject(agency, "backup.break_command", exit_code=5)
    reloaded = agency.reload()
    assert reloaded.config.backup_command != original
    assert "sys.exit(5)" in " ".join(reloaded.backup_argv())
    get_injector("backup.break_command").restore(InjectionContext(agency=agency, resource="backups:nightly"), report)
    assert agency.reload().config.backup_command == original
