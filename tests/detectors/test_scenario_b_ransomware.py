"""Scenario B of scenarios.md, planted into a generated agency through the injectors and detected
from the data: 14,000 files renamed to *.locked within 10 minutes, README_DECRYPT.txt, the ledgers
of 85 clients (payroll of about 4,100 people) unreadable, last good backup 72 h old (RPO 24 h)."""

from __future__ import annotations

import pytest

from ledgerguard.agency import load_agency
from ledgerguard.catalog import load_catalog
from ledgerguard.classification.service import classify
from ledgerguard.config import PROJECT_ROOT
from ledgerguard.models import Level, RegulatoryGrade
from ledgerguard.response.detection import run_detectors

RESOURCE = "fileserver:bookkeeping"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from ledgerguard.sample.scenarios import plant_scenario

    root = tmp_path_factory.mktemp("scenario-b") / "agency"
    scenario = plant_scenario("B", root, seed=23)
    return load_agency(root), scenario.as_of, scenario.planted


def test_planted_share_really_changed(planted):
    agency, _, renamed = planted
    folder = agency.root / "fileshare" / "bookkeeping"
    assert len(list(folder.rglob("*.locked"))) == 14_000 == renamed["files_renamed"]
    assert (folder / "README_DECRYPT.txt").is_file()


def test_scenario_b_detected_and_graded(planted, tmp_path):
    agency, now, _ = planted
    catalog = load_catalog(PROJECT_ROOT / "catalog")
    entry = catalog.get("ransomware")
    detection = run_detectors(entry=entry, agency=agency, resource=RESOURCE, scratch_dir=tmp_path, now=now)
    fired = {f.detector for f in detection.findings}
    assert {"files.mass_rename", "files.ransom_note", "ledger.db_unreadable"} <= fired
    assert "edr.alert" not in fired  # no EDR alert was planted
    facts = detection.facts
    assert facts["encrypted_files"] == 14_000 and facts["new_extension"] == ".locked"
    assert facts["ransom_note"] is True and facts["ransomware"] is True
    assert facts["clients_affected"] == 85 and facts["ledgers_unreadable"] == 85
    assert facts["pii_people"] == 4_100
    assert {"id_number", "bank_card"} <= set(facts["pii_kinds"])
    assert facts["pii_tampered"] is True and facts["agency_role"] == "entrusted"
    assert facts["attacker_active"] is True and facts["suspected_crime"] is True
    assert facts["clean_backup_available"] is True
    assert 71.5 <= facts["backup_age_hours"] <= 72.5 and facts["rpo_hours"] == 24

    a = classify(entry=entry, rubric=catalog.rubric, facts=facts, detected_at=now,
                 calendar=catalog.calendar, language="zh-CN")
    assert a.level == Level.ONE
    assert a.regulatory_grade == RegulatoryGrade.GENERAL  # 4,100 < 1,000,000 people
    rules = {line.rule for line in a.fired}
    assert {"ransomware", "clients_10_plus", "attacker_active", "pipl_clock", "rpo_breached"} <= rules
    ids = {o.id for o in a.obligations}
    assert "pipl_57_entrusted" in ids            # PIPL Art. 57 via the clients (entrusted processor)
    assert "police_report" in ids                # 公安
    assert "rpo_breach_record" in ids
    assert not ids & {"cac_report_4h", "cac_report_1h"}  # no CAC 4 h report at 一般
    police = next(o for o in a.obligations if o.id == "police_report")
    assert police.deadline == now.astimezone(police.deadline.tzinfo)
