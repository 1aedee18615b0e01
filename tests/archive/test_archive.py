"""The compliance archive: exported from a real run's register and reports, verified offline;
one changed byte, an edited timeline record or a removed file is named."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from tests.support.history import task_runs_settled

pytestmark = pytest.mark.prefect


@pytest.fixture
def archive(live, tmp_path):
    from flows import ledger_loss
    from ledgerguard.cli import app
    from ledgerguard.detectors import InjectionContext, get_injector
    from ledgerguard.models import utcnow
    from ledgerguard.response.models import LedgerLossRequest
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    client = runtime.agency.client_ids[0]
    get_injector("ledger.delete_vouchers").inject(
        InjectionContext(agency=runtime.agency, resource=f"ledger:{client}"), count=3)
    outcome = ledger_loss(LedgerLossRequest(client_id=client, source="test"), return_state=True).result()
    task_runs_settled([outcome.flow_run_id])  # the archive keeps what Prefect has recorded
    today = utcnow().astimezone(runtime.agency.tz).date()
    out = tmp_path / "archive"
    result = CliRunner().invoke(app, ["export", "--from", f"{today}", "--to", f"{today + timedelta(days=1)}",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, outcome


def test_an_export_holds_the_records_reports_and_evidence_and_verifies(archive):
    from ledgerguard.cli import app

    out, outcome = archive
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["records"]["incidents"] == 1 and manifest["records"]["timeline_entries"] > 5
    assert manifest["timeline_head"]["hash"]
    incidents = [json.loads(line) for line in (out / "records" / "incidents.jsonl").read_text().splitlines()]
    assert incidents[0]["id"] == outcome.incident_id
    assert any(name.startswith(f"reports/{outcome.incident_id}/postmortem-") for name in manifest["files"])
    assert manifest["evidence_files"] >= 1
    # Prefect vacuums its runs: the archive keeps the incident's runs as Prefect reported them.
    assert manifest["prefect"]["included"] is True and manifest["records"]["prefect_flow_runs"] >= 1
    runs = [json.loads(line) for line in (out / "records" / "prefect_flow_runs.jsonl").read_text().splitlines()]
    emergency = next(r for r in runs if r["id"] == outcome.flow_run_id)
    assert emergency["incident_id"] == outcome.incident_id and emergency["state_type"] == "COMPLETED"
    assert emergency["task_runs"] and "records/prefect_flow_runs.jsonl" in manifest["files"]
    result = CliRunner().invoke(app, ["export", "verify", str(out)])
    assert result.exit_code == 0 and "intact" in result.output


def test_one_changed_byte_an_edited_record_and_a_removed_file_are_named(archive):
    from ledgerguard.cli import app

    out, outcome = archive
    report = next((out / "reports" / outcome.incident_id).glob("postmortem-*.md"))
    data = bytearray(report.read_bytes())
    data[10] ^= 0x01
    report.write_bytes(bytes(data))
    timeline = out / "records" / "timeline_entries.jsonl"
    lines = timeline.read_text(encoding="utf-8").splitlines()
    entry = json.loads(lines[1])
    entry["message"] = entry["message"] + " (edited)"
    lines[1] = json.dumps(entry, ensure_ascii=False, sort_keys=True)
    timeline.write_text("\n".join(lines) + "\n", encoding="utf-8")
    removed = next(p for p in (out / "evidence").rglob("*") if p.is_file())
    removed.unlink()

    result = CliRunner().invoke(app, ["export", "verify", str(out)])
    assert result.exit_code == 1
    assert f"reports/{outcome.incident_id}/{report.name}: changed" in result.output
    assert "records/timeline_entries.jsonl: changed" in result.output
    assert f"records/timeline_entries.jsonl:2: record edited — timeline entry #{entry['seq']}" in result.output
    assert f"{removed.relative_to(out).as_posix()}: missing" in result.output


def test_an_export_refuses_a_bad_range_and_a_folder_in_use(live_unattended, tmp_path):
    from ledgerguard.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["export", "--from", "2026-12-02", "--to", "2026-12-01", "--out", str(tmp_path / "a")])
    assert bad.exit_code == 2 and "must be after" in bad.output
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    busy = runner.invoke(app, ["export", "--from", "2026-12-01", "--to", "2026-12-02", "--out", str(used)])
    assert busy.exit_code == 2 and "not empty" in busy.output
    assert runner.invoke(app, ["export", "verify", str(tmp_path)]).exit_code == 1
