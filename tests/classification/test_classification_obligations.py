"""Obligations carry absolute, tz-aware deadlines; facts are enriched without being mutated."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ledgerguard.classification import assess, classify, enrich_facts
from ledgerguard.models import RegulatoryGrade

from ledgerguard.calendar import SHANGHAI


def sh(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)

DETECTED = sh(2026, 11, 5, 11, 0)


def leak(catalog, people, **extra):
    facts = {"pii_leaked": True, "pii_people_leaked": people, "clients_affected": 40, **extra}
    return assess(catalog=catalog, emergency_type="vendor_breach", facts=facts, detected_at=DETECTED)


@pytest.mark.parametrize(
    ("people", "grade"),
    [(999_999, RegulatoryGrade.GENERAL), (1_000_000, RegulatoryGrade.LARGE),
     (10_000_000, RegulatoryGrade.MAJOR), (100_000_000, RegulatoryGrade.SPECIAL)],
)
def test_regulatory_grade_thresholds(catalog, people, grade):
    assert leak(catalog, people).regulatory_grade == grade


def test_direct_loss_makes_it_especially_major(catalog):
    a = assess(catalog=catalog, emergency_type="ransomware",
               facts={"ransomware": True, "direct_loss_yuan": 100_000_000}, detected_at=DETECTED)
    assert a.regulatory_grade == RegulatoryGrade.SPECIAL
    assert any(line.rule == "loss_100m_yuan" and line.dimension == "grade" for line in a.fired)


def test_cac_4h_only_from_one_million_people(catalog):
    below = {o.id for o in leak(catalog, 999_999).obligations}
    assert not below & {"cac_report_4h", "cac_summary_30d", "cac_report_1h"}
    a = leak(catalog, 1_000_000)
    cac = next(o for o in a.obligations if o.id == "cac_report_4h")
    assert cac.deadline == DETECTED + timedelta(hours=4)
    assert cac.deadline.tzinfo is not None and cac.immediate is False
    assert "网信" in cac.to
    assert "cac_report_1h" not in {o.id for o in a.obligations}
    # the vendor's own CAC duty is tracked by the vendor_breach file
    assert next(o for o in a.obligations if o.id == "vendor_cac_report").deadline == DETECTED + timedelta(hours=4)


def test_cii_operator_reports_within_one_hour(catalog):
    ids = {o.id: o for o in leak(catalog, 2_000_000, cii_operator=True).obligations}
    assert "cac_report_4h" not in ids
    assert ids["cac_report_1h"].deadline == DETECTED + timedelta(hours=1)


def test_summary_report_30_days_after_handling_ends(catalog):
    provisional = next(o for o in leak(catalog, 1_000_000).obligations if o.id == "cac_summary_30d")
    assert provisional.deadline == DETECTED + timedelta(days=30)
    assert "handling_ended_at" in provisional.note
    ended = sh(2026, 11, 20, 18, 0)
    final = next(o for o in leak(catalog, 1_000_000, handling_ended_at=ended.isoformat()).obligations
                 if o.id == "cac_summary_30d")
    assert final.deadline == ended + timedelta(days=30) and final.note == ""


@pytest.mark.parametrize(
    ("role", "expected"),
    [(None, {"pipl_57"}), ("handler", {"pipl_57"}), ("entrusted", {"pipl_57_entrusted"}),
     ("both", {"pipl_57", "pipl_57_entrusted"})],
)
def test_pipl_57_handler_or_entrusted(catalog, role, expected):
    facts = {"pii_lost": True, "clients_affected": 1}
    if role:
        facts["agency_role"] = role
    a = assess(catalog=catalog, emergency_type="ledger_loss", facts=facts, detected_at=DETECTED)
    got = {o.id for o in a.obligations if o.id.startswith("pipl_57")}
    assert got == expected
    for o in a.obligations:
        if o.id in expected:
            assert o.immediate and o.deadline == DETECTED


def test_no_pi_event_no_pipl(catalog):
    a = assess(catalog=catalog, emergency_type="ledger_loss", facts={"clients_affected": 1, "agency_role": "entrusted"},
               detected_at=DETECTED)
    assert not any(o.id.startswith("pipl") for o in a.obligations)


def test_police_report_when_crime_suspected(catalog):
    a = assess(catalog=catalog, emergency_type="insider_exfiltration",
               facts={"suspected_crime": True}, detected_at=DETECTED)
    police = next(o for o in a.obligations if o.id == "police_report")
    assert police.immediate and police.deadline == DETECTED and "公安" in police.to


def test_deadline_based_obligation_uses_the_filing_calendar(catalog):
    a = assess(catalog=catalog, emergency_type="payment_failure", facts={"debit_failed": True},
               detected_at=sh(2026, 11, 16, 15))
    pay = next(o for o in a.obligations if o.id == "pay_on_time")
    assert pay.deadline == sh(2026, 11, 16, 23, 59, 59) and not pay.immediate


def test_obligation_deadlines_fall_back_without_calendar(catalog):
    a = classify(entry=catalog.get("payment_failure"), rubric=catalog.rubric, facts={"debit_failed": True},
                 detected_at=DETECTED, calendar=None, language="en")
    pay = next(o for o in a.obligations if o.id == "pay_on_time")
    assert pay.deadline == DETECTED and "counted from detection" in pay.note


def test_enrichment_adds_derived_facts_and_copies(catalog):
    entry = catalog.get("etax_outage")
    facts = {"clients_affected": 37}
    enriched = enrich_facts(entry=entry, facts=facts, detected_at=sh(2026, 10, 26, 16, 40),
                            calendar=catalog.calendar)
    assert facts == {"clients_affected": 37}
    assert enriched["deadline_at"] == sh(2026, 10, 26, 23, 59, 59)
    assert enriched["hours_to_deadline"] == pytest.approx(7.33, abs=0.01)
    assert enriched["working_days_to_deadline"] == 0
    backup = enrich_facts(entry=catalog.get("backup_failure"), facts={}, detected_at=DETECTED,
                          calendar=catalog.calendar)
    assert backup == {"rpo_hours": 24, "rto_hours": 4}  # deadline: none


def test_given_facts_win_over_derived_ones(catalog):
    enriched = enrich_facts(entry=catalog.get("backup_failure"), facts={"rpo_hours": 12, "backup_age_hours": 13},
                            detected_at=DETECTED, calendar=catalog.calendar)
    assert enriched["rpo_hours"] == 12
    a = classify(entry=catalog.get("ledger_loss"), rubric=catalog.rubric,
                 facts={"hours_to_deadline": 3}, detected_at=DETECTED, calendar=catalog.calendar)
    assert any(line.rule == "deadline_24h" for line in a.fired)


def test_working_days_across_national_day_drive_urgency(catalog):
    # 09-30 to the October deadline 10-26 spans the holiday; 2026-10-19..26 contains 6 working days
    a = assess(catalog=catalog, emergency_type="filing_backlog", facts={"returns_unfiled": 1},
               detected_at=sh(2026, 10, 19, 9))
    enriched = enrich_facts(entry=catalog.get("filing_backlog"), facts={}, detected_at=sh(2026, 10, 19, 9),
                            calendar=catalog.calendar)
    assert enriched["working_days_to_deadline"] == 5
    assert a.urgency.value == "M"
    before = enrich_facts(entry=catalog.get("filing_backlog"), facts={}, detected_at=sh(2026, 9, 30, 9),
                          calendar=catalog.calendar)
    # 10-08, 10-09, 10-10 (调休 Saturday), 10-12..16, 10-19..23, 10-26 = 14
    assert before["working_days_to_deadline"] == 14


def test_beyond_calendar_years_degrades_gracefully(catalog):
    a = assess(catalog=catalog, emergency_type="ledger_loss", facts={"clients_affected": 1},
               detected_at=sh(2027, 3, 1, 10))
    assert a.level.value == 4  # no deadline known: no deadline urgency, no crash
    assert not any(line.rule.startswith("deadline_") for line in a.fired)


def test_bad_fact_type_is_treated_as_false(catalog, caplog):
    a = assess(catalog=catalog, emergency_type="ledger_loss", facts={"clients_affected": "many"},
               detected_at=DETECTED)
    assert a.impact.value == "L"
    assert "clients_10_plus" in caplog.text


def test_an_obligation_amount_is_read_from_the_facts(catalog):
    """The 滞纳金 so far travels with its obligation; no number in the facts, no amount."""
    facts = {"debit_failed": True, "clients_affected": 1, "late_fee_so_far_yuan": 1234.567}
    a = assess(catalog=catalog, emergency_type="payment_failure", facts=facts, detected_at=DETECTED)
    (pay,) = [o for o in a.obligations if o.id == "pay_on_time"]
    assert pay.amount_yuan == 1234.57
    for other in ({}, {"late_fee_so_far_yuan": "n/a"}, {"late_fee_so_far_yuan": True}):
        a = assess(catalog=catalog, emergency_type="payment_failure",
                   facts={"debit_failed": True, "clients_affected": 1, **other}, detected_at=DETECTED)
        assert [o.amount_yuan for o in a.obligations if o.id == "pay_on_time"] == [None]
