"""The worked scenarios of shared/domain/scenarios.md, through the real catalog files and rubric."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ledgerguard.classification import assess, classify
from ledgerguard.models import Level, Rating, RegulatoryGrade

from ledgerguard.calendar import SHANGHAI


def sh(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def rules(assessment, dimension=None):
    return {line.rule for line in assessment.fired if dimension is None or line.dimension == dimension}


def test_scenario_a_etax_outage_on_deadline_day(catalog):
    a = assess(catalog=catalog, emergency_type="etax_outage",
               facts={"probe_failed_minutes": 180, "clients_affected": 37, "clients_unfiled": 37,
                      "clients_total": 210, "outage_external": True},
               detected_at=sh(2026, 10, 26, 16, 40))
    assert (a.impact, a.urgency, a.level) == (Rating.H, Rating.H, Level.ONE)
    assert {"clients_10_plus", "deadline_24h"} <= rules(a)
    assert a.regulatory_grade == RegulatoryGrade.GENERAL
    ids = {o.id for o in a.obligations}
    assert not ids & {"pipl_57", "pipl_57_entrusted", "cac_report_4h", "police_report"}  # not a security incident
    assert "file_on_time" in ids
    entry = catalog.get("etax_outage")
    assert {"manager", "accountants"} <= set(entry.roles_for(1)) and entry.routing.notify_clients(1)


def test_scenario_b_ransomware(catalog):
    facts = {"ransomware": True, "encrypted_files": 14000, "ransom_note": True, "attacker_active": True,
             "clients_affected": 85, "pii_people": 4100, "pii_kinds": ["id_number", "bank_card"],
             "pii_tampered": True, "agency_role": "entrusted", "suspected_crime": True,
             "backup_age_hours": 72}
    detected = sh(2026, 11, 5, 2, 20)
    a = assess(catalog=catalog, emergency_type="ransomware", facts=facts, detected_at=detected)
    assert a.level == Level.ONE
    assert a.regulatory_grade == RegulatoryGrade.GENERAL  # 4,100 < 1,000,000
    assert {"ransomware", "attacker_active", "rpo_breached"} <= rules(a)
    by_id = {o.id: o for o in a.obligations}
    assert "pipl_57_entrusted" in by_id and "police_report" in by_id
    assert "pipl_57" not in by_id  # the agency is the entrusted processor: the clients notify
    assert not {"cac_report_4h", "cac_report_1h", "cac_summary_30d"} & set(by_id)
    assert by_id["pipl_57_entrusted"].immediate and by_id["pipl_57_entrusted"].deadline == detected
    assert "PIPL" in by_id["pipl_57_entrusted"].law
    assert a.sla.ack_minutes == 10  # ransomware overrides the level-1 acknowledgement target
    assert a.sla.rpo_hours == 24


def test_scenario_c_ledger_deleted_and_restored(catalog):
    a = assess(catalog=catalog, emergency_type="ledger_loss",
               facts={"ledger_deleted": True, "clients_affected": 1, "restored": True,
                      "reconciliation_difference": 0},
               detected_at=sh(2026, 11, 17, 10, 5))
    assert (a.impact, a.urgency) == (Rating.L, Rating.L)
    assert a.level == Level.FOUR and a.priority.value == "P5"
    assert rules(a, "impact") == {"impact_default"} and rules(a, "urgency") == {"urgency_default"}
    assert not any(o.id.startswith("pipl") for o in a.obligations)
    entry = catalog.get("ledger_loss")
    assert not entry.routing.notify_clients(4)  # no external notice
    assert entry.records == ["restore_log", "reconciliation"]


def test_scenario_c_breaks_when_the_difference_is_not_zero(catalog):
    a = assess(catalog=catalog, emergency_type="ledger_loss",
               facts={"clients_affected": 1, "restored": True, "reconciliation_difference": 1250.5},
               detected_at=sh(2026, 11, 17, 10, 5))
    assert a.impact == Rating.M and "reconciliation_difference" in rules(a, "impact")


def test_scenario_d_stale_backup(catalog):
    a = assess(catalog=catalog, emergency_type="backup_failure",
               facts={"backup_age_hours": 75, "failed_sets_since": 3, "data_lost": False},
               detected_at=sh(2026, 11, 5, 8))
    assert (a.impact, a.urgency, a.level) == (Rating.M, Rating.M, Level.THREE)
    fired = {(line.source, line.rule, line.dimension, line.value) for line in a.fired}
    assert ("backup_failure.yaml", "rpo_breached", "impact", "M") in fired
    assert ("backup_failure.yaml", "exposure_grows_daily", "urgency", "M") in fired
    assert not any(o.id.startswith(("pipl", "cac", "police")) for o in a.obligations)
    assert any("会计档案管理办法" in o.law for o in a.obligations)
    assert not catalog.get("backup_failure").routing.notify_clients(3)


def test_scenario_d_within_rpo_is_not_rated_up(catalog):
    a = assess(catalog=catalog, emergency_type="backup_failure", facts={"backup_age_hours": 20},
               detected_at=sh(2026, 11, 5, 8))
    assert a.level == Level.FOUR and "rpo_breached" not in rules(a)


def test_scenario_e_annual_report_backlog(catalog):
    a = assess(catalog=catalog, emergency_type="annual_deadline",
               facts={"clients_affected": 14, "clients_total": 180, "items_unfiled": 14},
               detected_at=sh(2026, 6, 25, 9))
    assert (a.impact, a.urgency, a.level) == (Rating.H, Rating.M, Level.TWO)
    assert {"clients_10_plus", "deadline_5_working_days"} <= rules(a)
    report = next(o for o in a.obligations if o.id == "business_annual_report")
    assert report.deadline == sh(2026, 6, 30, 23, 59, 59)
    assert "企业信息公示暂行条例" in report.law


@pytest.mark.parametrize(("vip", "level"), [(False, Level.FOUR), (True, Level.THREE)])
def test_scenario_f_urgent_claim(catalog, vip, level):
    facts = {"clients_affected": 1, "claims_total": 48, "claims_unsupported": 6}
    if vip:
        facts["vip"] = True
    a = assess(catalog=catalog, emergency_type="urgent_claim", facts=facts, detected_at=sh(2026, 6, 29, 17))
    assert a.urgency == Rating.M
    assert a.level == level
    assert a.vip_bump is vip
    assert ("vip" in rules(a)) is vip
    assert any(o.id == "supported_claims_only" for o in a.obligations)


def test_every_catalog_scenario_gives_its_expected_level(catalog):
    checked = 0
    for entry in catalog:
        for scenario in entry.scenarios:
            a = classify(entry=entry, rubric=catalog.rubric, facts=scenario.facts,
                         detected_at=scenario.detected_at or sh(2026, 3, 2, 10), calendar=catalog.calendar)
            assert a.level.value == scenario.expected_level, (entry.id, scenario.id, a.fired)
            assert set(scenario.expected_rules) <= rules(a), (entry.id, scenario.id)
            if scenario.expected_grade:
                assert a.regulatory_grade == scenario.expected_grade
            checked += 1
    assert checked >= 15


def test_english_texts(catalog):
    a = assess(catalog=catalog, emergency_type="backup_failure", facts={"backup_age_hours": 75},
               detected_at=sh(2026, 11, 5, 8), language="en")
    line = next(line for line in a.fired if line.rule == "rpo_breached")
    assert line.text.startswith("Newest good backup")
    assert all("Restore a backup regime" in o.action for o in a.obligations)
    zh = assess(catalog=catalog, emergency_type="backup_failure", facts={"backup_age_hours": 75},
                detected_at=sh(2026, 11, 5, 8))
    assert next(line for line in zh.fired if line.rule == "matrix").text.endswith("三级")


def test_sla_per_level(catalog):
    a = assess(catalog=catalog, emergency_type="ledger_loss", facts={"clients_affected": 1},
               detected_at=sh(2026, 11, 17, 10, 5))
    assert (a.sla.ack_minutes, a.sla.resolve_hours, a.sla.rto_hours, a.sla.rpo_hours) == (480, 72, 4, 24)
    a1 = assess(catalog=catalog, emergency_type="ledger_loss",
                facts={"clients_affected": 20, "attacker_active": True}, detected_at=sh(2026, 11, 17, 10, 5))
    assert (a1.level, a1.sla.ack_minutes, a1.sla.resolve_hours) == (Level.ONE, 15, 4)
    assert a1.assessed_at - a.assessed_at < timedelta(minutes=1)


def test_scenario_d_as_the_backup_detector_reports_it(catalog):
    # backup.age with no good backup at all: age unknown (None), rpo_breached flagged
    a = assess(catalog=catalog, emergency_type="backup_failure",
               facts={"backup_age_hours": None, "rpo_hours": 24, "rpo_breached": True, "control_failure": True,
                      "pii_lost": False, "pii_leaked": False, "pii_tampered": False,
                      "statutory_consequence": False},
               detected_at=sh(2026, 11, 5, 8))
    assert (a.impact, a.urgency, a.level) == (Rating.M, Rating.M, Level.THREE)
    # a failed test restore and checksum mismatches use the detectors' fact names
    b = assess(catalog=catalog, emergency_type="backup_failure",
               facts={"test_restore_ok": False, "test_restore_failed": 2, "checksum_mismatch_count": 1},
               detected_at=sh(2026, 11, 5, 8))
    assert {"test_restore_failed", "checksum_mismatch"} <= rules(b) and b.impact == Rating.M
