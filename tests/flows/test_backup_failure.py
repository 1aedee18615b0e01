"""The backup-failure flow end to end: stale backups → 三级 → re-run, verify, test restore → resolved."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.prefect


def _inject(injector_id: str, **kwargs):
    from ledgerguard.detectors import get_injector
    from ledgerguard.detectors.base import InjectionContext
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    return get_injector(injector_id).inject(
        InjectionContext(agency=runtime.agency, resource="backups:nightly", scratch_dir=runtime.settings.scratch_dir), **kwargs)


def test_stale_backups_are_graded_three_and_repaired(live):
    from flows import backup_failure
    from ledgerguard.backups import newest_good_backup
    from ledgerguard.register import service as register
    from ledgerguard.response.models import BackupFailureRequest
    from ledgerguard.runtime import get_runtime

    _inject("backup.stale", hours_old=75)  # scenario D: newest good backup 75 h old, RPO 24 h
    outcome = backup_failure(BackupFailureRequest(source="test"))

    assert outcome.incident_created
    assert outcome.level == 3, outcome.rationale
    # Every automatic step (re-run, checksums, test restore, re-detect) succeeded; the root-cause
    # write-up stays open for a person, so the incident is mitigated, not resolved.
    automatic = [s for s in outcome.steps if s.kind == "automatic"]
    assert [s.status for s in automatic] == ["succeeded"] * 4, [s.step_id for s in automatic]
    assert [s.status for s in outcome.steps if s.kind == "manual"] == ["open"]
    assert outcome.status == "mitigated"
    runtime = get_runtime()
    newest = newest_good_backup(runtime.agency)
    assert newest is not None
    with runtime.session() as db_session:
        obligations = register.list_obligations(db_session=db_session, incident_id=outcome.incident_id)
        assert any("会计档案管理办法" in o.law for o in obligations)
    subjects = [str(m["subject"]) for m in live["sink"].messages()]
    assert any("三级" in s and "运行报告" in s for s in subjects), subjects


def test_failing_backup_command_leaves_incident_open_and_reports_why(live):
    from flows import backup_failure
    from ledgerguard.response.models import BackupFailureRequest

    _inject("backup.stale", hours_old=75)
    _inject("backup.break_command")
    outcome = backup_failure(BackupFailureRequest(source="test"))
    assert outcome.status == "open"
    failed = [s for s in outcome.steps if s.status == "failed"]
    assert failed and "backup" in failed[0].step_id
    reports = [m for m in live["sink"].messages() if "运行报告" in str(m["subject"])]
    assert reports
    text = reports[-1].get_body(preferencelist=("html", "plain")).get_content()
    assert "失败" in text
