"""The command line as an IT lead uses it: catalog checks and the audit of the timeline."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from ledgerguard.cli import app
from ledgerguard.config import PROJECT_ROOT

runner = CliRunner()


def test_check_passes_on_the_bundled_catalog():
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    # 15 types + rubric + filing calendar + drills + penalties + retention
    assert "catalog OK: 20 file(s)" in result.output


def test_check_names_file_and_field_of_every_problem(tmp_path):
    catalog = tmp_path / "catalog"
    shutil.copytree(PROJECT_ROOT / "catalog", catalog)
    ledger = catalog / "ledger_loss.yaml"
    ledger.write_text(ledger.read_text(encoding="utf-8").replace("action: ledger.freeze", "acton: ledger.freeze"),
                      encoding="utf-8")
    backup = catalog / "backup_failure.yaml"
    backup.write_text(backup.read_text(encoding="utf-8").replace("rto_hours: 4", "rto_hours: soon"),
                      encoding="utf-8")
    result = runner.invoke(app, ["check", "--catalog", str(catalog)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "ledger_loss.yaml" in output and "runbook.0" in output
    assert "backup_failure.yaml" in output and "sla.rto_hours" in output


def test_audit_verify_names_an_edited_timeline_entry(lg_home):
    from sqlalchemy import text

    from ledgerguard.models import Signal
    from ledgerguard.register import service as register
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    with runtime.session() as db_session:
        incident, _ = register.open_or_join_incident(
            db_session=db_session, title="t",
            signal=Signal(source="test", emergency_type="ledger_loss", resource="ledger:C0001"))
        for i in range(3):
            register.append_timeline(db_session=db_session, incident_id=incident.id, stage="remediate",
                                     kind="note", message=f"step {i}")
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "timeline intact: 4 entries" in result.output

    with runtime.engine.begin() as connection:
        connection.execute(text("UPDATE timeline_entries SET message = 'nothing happened' WHERE seq = 3"))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1
    assert "#3" in result.output and "edited" in result.output


@pytest.mark.parametrize("args", [["run", "--help"], ["demo", "--help"], ["sample", "--help"]])
def test_commands_have_help(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def test_sample_scenario_plants_it_and_says_how_to_run_it(lg_home, tmp_path):
    from ledgerguard.agency import load_agency
    from ledgerguard.backups import newest_good_backup

    target = tmp_path / "agency"
    result = runner.invoke(app, ["sample", "--scenario", "d", "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert "expected level 3" in result.output and "ledgerguard run backup-failure --target nightly" in result.output
    agency = load_agency(target)
    newest = newest_good_backup(agency)
    assert newest is not None and newest.age_hours(datetime.now(timezone.utc)) >= 74  # scenario D: 75 h old

    unknown = runner.invoke(app, ["sample", "--scenario", "Z", "--out", str(tmp_path / "other")])
    assert unknown.exit_code == 2 and "A e-tax" not in unknown.output and "unknown scenario" in unknown.output
