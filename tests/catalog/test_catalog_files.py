from __future__ import annotations

import re
from pathlib import Path

import pytest

from ledgerguard.catalog import ROLES, CatalogError, CatalogProblem, check_catalog, load_catalog
from ledgerguard.config import PROJECT_ROOT
from ledgerguard.models import StepKind

TYPES = {
    "etax_outage", "filing_backlog", "credential_expiry", "ransomware", "ledger_loss",
    "backup_failure", "saas_outage", "vendor_breach", "insider_exfiltration", "account_takeover",
    "wrong_filing", "payment_failure", "annual_deadline", "urgent_claim", "office_outage",
}
SHARED_CATALOG_MD = PROJECT_ROOT.parent / "shared" / "domain" / "catalog.md"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(PROJECT_ROOT / "catalog")


def test_every_type_has_a_file_and_loads(catalog):
    assert set(catalog.entries) == TYPES
    assert check_catalog(PROJECT_ROOT / "catalog") == []
    for type_id in TYPES:
        assert (PROJECT_ROOT / "catalog" / f"{type_id}.yaml").is_file()


def test_types_match_the_shared_catalog_table():
    if not SHARED_CATALOG_MD.exists():
        pytest.skip("shared domain folder not present")
    ids = set(re.findall(r"^\| ([a-z_]+) \|", SHARED_CATALOG_MD.read_text(encoding="utf-8"), re.M)) - {"id"}
    assert ids == TYPES


def test_default_directory_comes_from_settings(catalog):
    assert set(load_catalog().entries) == TYPES


def test_get_and_by_flow(catalog):
    assert catalog.get("ledger_loss").flow == "ledger-loss"
    assert catalog.by_flow("backup-failure").id == "backup_failure"
    with pytest.raises(KeyError, match="unknown emergency type 'nope'.*ledger_loss"):
        catalog.get("nope")
    with pytest.raises(KeyError, match="no emergency type has flow 'nope'"):
        catalog.by_flow("nope")


def test_entries_are_complete(catalog):
    for entry in catalog:
        assert entry.flow == entry.id.replace("_", "-")
        assert sorted(entry.routing.levels) == [1, 2, 3, 4]
        for roles in entry.routing.levels.values():
            assert roles and set(roles) <= set(ROLES)
        assert entry.detectors and entry.runbook and entry.records and entry.scenarios
        for step in entry.runbook:
            assert (step.action is not None) == (step.kind == StepKind.AUTOMATIC) or step.kind == StepKind.APPROVAL
        assert entry.name.zh and entry.name.en


def test_rubric_documents_the_role_vocabulary(catalog):
    assert set(catalog.rubric.roles) == set(ROLES)


def test_backup_failure_uses_the_agreed_ids(catalog):
    entry = catalog.get("backup_failure")
    assert [d.id for d in entry.detectors] == ["backup.age", "backup.checksum", "backup.test_restore"]
    assert entry.detectors[0].params == {"rpo_hours": 24}
    actions = [s.action for s in entry.runbook if s.kind == StepKind.AUTOMATIC]
    assert actions == ["backup.rerun", "backup.verify_checksums", "backup.test_restore", "verify.redetect"]
    assert (entry.sla.rpo_hours, entry.sla.rto_hours) == (24, 4)


def test_ledger_loss_uses_the_agreed_ids(catalog):
    entry = catalog.get("ledger_loss")
    assert [d.id for d in entry.detectors] == ["ledger.row_count_drop", "ledger.trial_balance"]
    actions = [s.action for s in entry.runbook if s.kind == StepKind.AUTOMATIC]
    assert actions == ["ledger.freeze", "ledger.restore_to_staging", "ledger.verify_staging",
                       "ledger.swap_in", "verify.redetect"]
    assert entry.step("swap_in").destructive is True
    assert [s.destructive for s in entry.runbook].count(True) == 1
    assert any(s.kind == StepKind.MANUAL for s in entry.runbook)
    assert (entry.sla.rpo_hours, entry.sla.rto_hours) == (24, 4)
    assert entry.records == ["restore_log", "reconciliation"]


def test_fact_names_cover_generic_and_type_facts(catalog):
    names = catalog.fact_names()
    assert "clients_affected" in names and "backup_age_hours" in names
    assert "reconciliation_difference" in names  # ledger_loss's own fact


# ----------------------------------------------------------------- broken copies
def _problems(directory: Path, templates: Path) -> list[CatalogProblem]:
    return check_catalog(directory, templates_dir=templates)


def _has(problems, file, field, reason_part=""):
    return any(p.file == file and p.field == field and reason_part in p.reason for p in problems)


def test_broken_copy_reports_every_problem_with_file_and_field(catalog_copy, no_templates):
    # 1. YAML syntax error (line 3)
    (catalog_copy / "etax_outage.yaml").write_text("id: etax_outage\nflow: etax-outage\nname: {zh: x, en: [\n",
                                                   encoding="utf-8")
    # 2. unknown field
    text = (catalog_copy / "filing_backlog.yaml").read_text(encoding="utf-8")
    (catalog_copy / "filing_backlog.yaml").write_text(text.replace("records:", "recods: [x]\nrecords:"),
                                                      encoding="utf-8")
    # 3. bad expression in a rule
    text = (catalog_copy / "backup_failure.yaml").read_text(encoding="utf-8")
    text = text.replace("when: checksum_mismatch_count >= 1\n", "when: checksum_mismatch_count >=\n", 1)
    (catalog_copy / "backup_failure.yaml").write_text(text, encoding="utf-8")
    # 4. automatic step without an action (runbook.2 of ledger_loss is verify_staging)
    text = (catalog_copy / "ledger_loss.yaml").read_text(encoding="utf-8")
    text = text.replace("    action: ledger.verify_staging\n", "")
    (catalog_copy / "ledger_loss.yaml").write_text(text, encoding="utf-8")
    # 5. unknown role and a level outside 1..4
    text = (catalog_copy / "office_outage.yaml").read_text(encoding="utf-8")
    text = text.replace("  4: [it, duty_lead]", "  4: [it, janitor]\n  5: [it]")
    (catalog_copy / "office_outage.yaml").write_text(text, encoding="utf-8")
    # 6. id that does not match the file name, plus a misspelt fact
    text = (catalog_copy / "urgent_claim.yaml").read_text(encoding="utf-8")
    text = text.replace("id: urgent_claim\nflow: urgent-claim", "id: urgent_claims\nflow: urgent-claims")
    text = text.replace("when: claims_total >= 100", "when: claim_total >= 100")
    (catalog_copy / "urgent_claim.yaml").write_text(text, encoding="utf-8")
    # 7. an obligation amount reading a misspelt fact
    text = (catalog_copy / "wrong_filing.yaml").read_text(encoding="utf-8")
    (catalog_copy / "wrong_filing.yaml").write_text(
        text.replace("amount: late_fee_so_far_yuan", "amount: late_fees_so_far_yuan"), encoding="utf-8")
    # 8. a key written twice
    text = (catalog_copy / "payment_failure.yaml").read_text(encoding="utf-8")
    (catalog_copy / "payment_failure.yaml").write_text(text + "records: [again]\n", encoding="utf-8")

    problems = _problems(catalog_copy, no_templates)
    assert _has(problems, "etax_outage.yaml", "line 4, column 1", "YAML syntax error"), problems
    assert _has(problems, "filing_backlog.yaml", "recods", "unknown field")
    assert _has(problems, "backup_failure.yaml", "severity.rules.2.when", "bad condition")
    assert _has(problems, "ledger_loss.yaml", "runbook.2", "needs an action")
    assert _has(problems, "office_outage.yaml", "routing.4.1", "unknown role 'janitor'")
    assert _has(problems, "office_outage.yaml", "routing.5", "less than or equal to 4")
    assert _has(problems, "urgent_claim.yaml", "id", "must equal the file name")
    assert _has(problems, "urgent_claim.yaml", "severity.rules.1.when", "unknown fact 'claim_total'")
    assert _has(problems, "wrong_filing.yaml", "obligations.1.amount", "unknown fact 'late_fees_so_far_yuan'")
    payment_lines = len(text.splitlines())
    assert _has(problems, "payment_failure.yaml", f"line {payment_lines + 1}, column 1",
                "duplicate key 'records' (first on line")
    # the good files are not blamed
    assert not any(p.file == "ransomware.yaml" for p in problems)

    with pytest.raises(CatalogError) as info:
        load_catalog(catalog_copy, templates_dir=no_templates)
    assert info.value.problems == problems
    lines = str(info.value).splitlines()
    assert len(lines) == len(problems)
    assert "ledger_loss.yaml: runbook.2: an automatic step needs an action (e.g. ledger.freeze)" in lines


def test_manual_step_with_action_and_duplicate_flow(catalog_copy, no_templates):
    text = (catalog_copy / "wrong_filing.yaml").read_text(encoding="utf-8")
    text = text.replace("    kind: manual\n", "    kind: manual\n    action: filing.submit\n", 1)
    (catalog_copy / "wrong_filing.yaml").write_text(text, encoding="utf-8")
    problems = _problems(catalog_copy, no_templates)
    assert _has(problems, "wrong_filing.yaml", "runbook.1", "must not name an action")


def test_rubric_problems_are_reported(catalog_copy, no_templates):
    text = (catalog_copy / "rubric.yaml").read_text(encoding="utf-8")
    text = text.replace("  L: {H: P3, M: P4, L: P5}", "  L: {H: P3, M: P4}")
    text = text.replace("when: suspected_crime", "when: suspected_crime and and")
    (catalog_copy / "rubric.yaml").write_text(text, encoding="utf-8")
    problems = _problems(catalog_copy, no_templates)
    assert _has(problems, "rubric.yaml", "matrix", "row L")
    assert any(p.file == "rubric.yaml" and p.field.startswith("obligations.") and p.field.endswith(".when")
               for p in problems)


def test_missing_templates_are_reported_only_when_templates_exist(catalog_copy, tmp_path):
    templates = tmp_path / "tpl"
    (templates / "zh-CN").mkdir(parents=True)
    # an empty templates folder: nothing checked
    assert _problems(catalog_copy, templates) == []
    for name in ("notify_staff", "notify_client", "report", "postmortem"):
        (templates / "zh-CN" / f"{name}.md.j2").write_text("x", encoding="utf-8")
    problems = _problems(catalog_copy, templates)
    assert problems and all(p.field == "templates.pipl57" for p in problems)
    assert _has(problems, "ransomware.yaml", "templates.pipl57", "templates/zh-CN/notice_pipl57.*")
    (templates / "zh-CN" / "notice_pipl57.md.j2").write_text("x", encoding="utf-8")
    assert _problems(catalog_copy, templates) == []


def test_missing_rubric_and_calendar(tmp_path, no_templates):
    directory = tmp_path / "empty"
    directory.mkdir()
    problems = _problems(directory, no_templates)
    assert {p.file for p in problems} >= {"rubric.yaml", "filing-calendar.yaml"}
    with pytest.raises(CatalogError):
        load_catalog(directory, templates_dir=no_templates)
