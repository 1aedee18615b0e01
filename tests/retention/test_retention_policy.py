"""catalog/retention.yaml: the periods of shared/domain/catalog.md, every type mapped, problems named
by file and field; retain-until per incident (open never, permanent never, Art. 15 counting)."""

from __future__ import annotations

import json
import re
import shutil
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from ledgerguard.config import PROJECT_ROOT
from tests.retention.conftest import build_incident, years_ago

CATALOG_MD = PROJECT_ROOT.parent / "shared" / "domain" / "catalog.md"
runner = CliRunner()


@pytest.fixture(scope="module")
def catalog():
    from ledgerguard.catalog import load_catalog

    return load_catalog(PROJECT_ROOT / "catalog")


@pytest.fixture
def catalog_copy(tmp_path):
    target = tmp_path / "catalog"
    shutil.copytree(PROJECT_ROOT / "catalog", target)
    return target


def _edit(path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_periods_are_those_of_the_shared_catalog(catalog):
    if not CATALOG_MD.exists():
        pytest.skip("shared domain folder not present")
    section = CATALOG_MD.read_text(encoding="utf-8").split("## Records to keep", 1)[1].split("##", 1)[0]
    kinds = catalog.retention.kinds
    expected = {"accounting_vouchers": r"Vouchers and ledgers (\d+) years", "accounting_ledgers": r"ledgers (\d+) years",
                "periodic_reports": r"monthly/quarterly reports (\d+) years",
                "bank_statements": r"bank statements and tax returns (\d+) years",
                "tax_returns": r"tax returns (\d+) years"}
    for kind, pattern in expected.items():
        assert kinds[kind].years == int(re.search(pattern, " ".join(section.split())).group(1)), kind
    assert "annual reports permanently" in " ".join(section.split()) and kinds["annual_reports"].permanent
    assert all("会计档案管理办法" in kinds[k].source for k in (*expected, "annual_reports"))
    assert "会计档案管理办法" in catalog.retention.source


def test_every_type_is_mapped_and_the_examples_hold(catalog):
    policy = catalog.retention
    for entry in catalog:
        kinds = policy.kinds_for(entry.records, drill=False)
        assert "incident_record" in kinds, entry.id
    longest = {e.id: policy.kinds[policy.longest(policy.kinds_for(e.records, drill=False))] for e in catalog}
    assert longest["ledger_loss"].years == 30  # ledgers and vouchers evidence
    assert longest["wrong_filing"].years == 10 and "tax_returns" in policy.kinds_for(
        catalog.get("wrong_filing").records, drill=False)
    assert policy.kinds[policy.longest(policy.kinds_for([], drill=True))].years == 3
    assert policy.kinds[policy.purge_records].permanent


def test_check_names_the_file_and_field_of_retention_problems(catalog_copy):
    from ledgerguard.catalog import CatalogError, check_catalog, load_catalog
    from ledgerguard.cli import app

    path = catalog_copy / "retention.yaml"
    _edit(path, "  restore_log: [accounting_vouchers, accounting_ledgers]\n", "")
    _edit(path, "  reconciliation: [accounting_ledgers]", "  reconciliation: [acounting_ledgers]")
    _edit(path, "purge_records: destruction_register", "purge_records: drill_record")
    problems = [str(p) for p in check_catalog(catalog_copy)]
    assert ("retention.yaml: records: emergency type ledger_loss (ledger_loss.yaml) has no retention mapping for "
            "its record 'restore_log': map it to kinds under records:") in problems
    assert any(p.startswith("retention.yaml: records: emergency type ransomware") for p in problems)
    assert any(p.startswith("retention.yaml: records.reconciliation.0: unknown kind 'acounting_ledgers'")
               for p in problems)
    assert any(p.startswith("retention.yaml: purge_records: 'drill_record' must be a permanent kind") for p in problems)
    with pytest.raises(CatalogError):
        load_catalog(catalog_copy)
    result = runner.invoke(app, ["check", "--catalog", str(catalog_copy)])
    assert result.exit_code == 1
    assert "retention.yaml: records: emergency type ledger_loss" in " ".join(result.output.split())
    # a kind that is malformed is named by its field (the file is then not cross-checked)
    _edit(path, "    years: 10\n    source: 会计档案管理办法 Art. 14, 附表1 四、其他会计资料\n",
          "    years: 10\n    permanent: true\n    source: 会计档案管理办法 Art. 14, 附表1 四、其他会计资料\n")
    _edit(path, "    years: 3\n", "    years: three\n")
    problems = [str(p) for p in check_catalog(catalog_copy)]
    assert "retention.yaml: kinds.bank_statements: give either years or permanent: true, not both" in problems
    assert any(p.startswith("retention.yaml: kinds.pi_notices.years: Input should be a valid integer") for p in problems)


    path.unlink()
    assert any(str(p).startswith("retention.yaml: (file): missing") for p in check_catalog(catalog_copy))


def test_retain_until_counts_from_the_year_after_the_close(lg_home, catalog, catalog_copy):
    from ledgerguard.catalog import load_catalog
    from ledgerguard.register.models import Incident
    from ledgerguard.retention.service import assess, retain_until
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    tz = ZoneInfo("Asia/Shanghai")
    closed = years_ago(11)
    ledger = build_incident(runtime, emergency_type="ledger_loss", resource="ledger:C0001", closed=closed)
    still_open = build_incident(runtime, emergency_type="wrong_filing", resource="filing:C0002", closed=None)
    with runtime.session(read_only=True) as s:
        row = s.get(Incident, ledger.incident_id)
        until = retain_until(incident=row, catalog=catalog, tz=tz)
        assert until.astimezone(tz).isoformat() == f"{closed.astimezone(tz).year + 31}-01-01T00:00:00+08:00"
        assert retain_until(incident=s.get(Incident, still_open.incident_id), catalog=catalog, tz=tz) is None
        verdict = assess(incident=row, catalog=catalog, now=until, tz=tz)
        assert verdict.purgeable and verdict.governing_kind == "accounting_vouchers"
        assert not assess(incident=row, catalog=catalog, now=years_ago(-19), tz=tz).purgeable

        # an agency that counts from the close itself, and a type whose record is kept permanently
        _edit(catalog_copy / "retention.yaml", "counted_from: accounting_year_end", "counted_from: closed")
        _edit(catalog_copy / "retention.yaml", "  reconciliation: [accounting_ledgers]",
              "  reconciliation: [accounting_ledgers, annual_reports]")
        other = load_catalog(catalog_copy)
        row.emergency_type = "backup_failure"  # (not flushed: read-only session, rolled back)
        from_close = retain_until(incident=row, catalog=other, tz=tz)
        assert from_close.astimezone(tz).date() == closed.astimezone(tz).date().replace(
            year=closed.astimezone(tz).year + 10)
        row.emergency_type = "ledger_loss"
        permanent = assess(incident=row, catalog=other, now=years_ago(-200), tz=tz)
        assert not permanent.purgeable and permanent.retain_until is None and permanent.permanent
        assert "kept permanently" in permanent.reason and "annual_reports" in permanent.reason


def test_retention_command_lists_the_policy_and_each_incident(runtime):
    from ledgerguard.cli import app

    closed = years_ago(11)
    ledger = build_incident(runtime, emergency_type="ledger_loss", resource="ledger:C0001", closed=closed)
    returns = build_incident(runtime, emergency_type="wrong_filing", resource="filing:C0002", closed=closed)
    build_incident(runtime, emergency_type="office_outage", resource="office:main", closed=None)
    result = runner.invoke(app, ["retention", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["kinds"]["accounting_vouchers"]["years"] == 30 and data["kinds"]["annual_reports"]["permanent"]
    assert data["types"]["ledger_loss"]["longest"] == "accounting_vouchers"
    assert data["drills"]["kinds"] == ["drill_record"]
    rows = {r["incident_id"]: r for r in data["incidents"]}
    year = closed.astimezone(ZoneInfo(runtime.settings.timezone)).year
    assert rows[ledger.incident_id]["retain_until"].startswith(f"{year + 30}-12-31T16:00:00")  # 01-01 +08:00
    assert not rows[ledger.incident_id]["purgeable"] and rows[returns.incident_id]["purgeable"]
    assert [r["reason"] for r in rows.values() if r["status"] == "open"][0].startswith("still open")

    result = runner.invoke(app, ["retention"], env={"LEDGERGUARD_LANGUAGE": "en", "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert ledger.incident_id in result.output and f"{year + 31}-01-01" in result.output
    assert "still open" in result.output and "会计档案管理办法" in result.output
