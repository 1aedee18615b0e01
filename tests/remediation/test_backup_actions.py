from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ledgerguard import backups as bk
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.remediation import ActionContext, ActionFailed, get_action


def actx(agency, scratch, **params):
    return ActionContext(agency=agency, resource="backups:nightly", params=params,
                         now=datetime.now(timezone.utc), scratch_dir=scratch, incident_id="INC-7")


def age_finding(agency, scratch):
    return get_detector("backup.age").detect(DetectionContext(
        agency=agency, resource="backups:nightly", now=datetime.now(timezone.utc), scratch_dir=scratch)).finding


def test_rerun_after_stale_makes_a_new_good_set(agency, scratch):
    get_injector("backup.stale").inject(InjectionContext(agency=agency, resource="backups:nightly"), hours_old=75)
    assert age_finding(agency, scratch) is not None
    before = {s.stamp for s in bk.list_backup_sets(agency)}
    result = get_action("backup.rerun")(actx(agency, scratch))
    assert result.ok, result.summary
    assert result.output["exit_code"] == 0
    assert result.output["backup_set"] not in before
    newest = bk.newest_good_backup(agency)
    assert newest.stamp == result.output["backup_set"] and len(newest.files) == 5
    assert age_finding(agency, scratch) is None


def test_rerun_with_a_broken_command_fails_with_the_exit_code(agency, scratch):
    get_injector("backup.break_command").inject(InjectionContext(agency=agency, resource="backups:nightly"),
                                                exit_code=7)
    with pytest.raises(ActionFailed) as err:
        get_action("backup.rerun")(actx(agency, scratch))
    assert "exited with code 7" in err.value.reason
    assert "unreachable" in err.value.reason
    assert err.value.output["exit_code"] == 7 and "unreachable" in err.value.output["stderr_tail"]


def test_rerun_timeout(agency, scratch):
    agency.config.backup_command = ["{python}", "-c", "import time; time.sleep(5)"]
    with pytest.raises(ActionFailed) as err:
        get_action("backup.rerun")(actx(agency, scratch, timeout_seconds=0.5))
    assert "timed out" in err.value.reason


def test_rerun_dry_run_changes_nothing(agency, scratch):
    before = [s.stamp for s in bk.list_backup_sets(agency)]
    result = get_action("backup.rerun")(ActionContext(agency=agency, resource="backups:nightly",
                                                      scratch_dir=scratch, dry_run=True))
    assert result.ok and result.output["dry_run"]
    assert [s.stamp for s in bk.list_backup_sets(agency)] == before


def test_verify_checksums_and_test_restore(agency, scratch):
    assert get_action("backup.verify_checksums")(actx(agency, scratch)).ok
    tr = get_action("backup.test_restore")(actx(agency, scratch))
    assert tr.ok and tr.output["scratch_dir"].startswith(str(scratch / "INC-7" / "test-restore"))
    get_injector("backup.corrupt_file").inject(InjectionContext(agency=agency, resource="backups:nightly"))
    with pytest.raises(ActionFailed) as err:
        get_action("backup.verify_checksums")(actx(agency, scratch))
    assert "do not match" in err.value.reason and err.value.output["mismatches"]
    with pytest.raises(ActionFailed):
        get_action("backup.test_restore")(actx(agency, scratch))
