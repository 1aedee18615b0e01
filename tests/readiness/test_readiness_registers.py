"""The readiness registers: typed YAML files, clear errors, and the gaps they show on a given day."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from ledgerguard.readiness.service import FILES, ReadinessError, find_gaps, load_readiness

TODAY = date(2026, 12, 3)


def write(agency: Path, register: str, content) -> Path:
    path = agency / "readiness" / FILES[register]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def agency(tmp_path) -> Path:
    root = tmp_path / "agency"
    write(root, "supplies", [
        {"id": "laptop-spare", "kind": "laptop", "name": "备用笔记本", "quantity": 2, "minimum": 2,
         "check_every_days": 90, "last_checked": "2026-10-01"},
        {"id": "ups-server", "kind": "ups", "name": "服务器UPS", "check_every_days": 30,
         "last_checked": "2026-09-01", "expires": "2026-12-20"},
        {"id": "ukey-a", "kind": "ukey", "name": "税务UKey（备用）", "quantity": 0, "last_checked": "2026-11-30",
         "expires": "2026-11-30"},
        {"id": "offline-kit", "kind": "offline_kit", "name": "离线申报工具包"},
    ])
    write(root, "resources", [
        {"id": "it-vendor", "kind": "it_support", "name": "某IT服务商", "contact": {"phone": "13800138000"},
         "last_verified": "2026-08-01"},
        {"id": "insurer", "kind": "insurer", "name": "某保险公司", "contact": {"email": "claims@ins.example"},
         "verify_every_days": 90, "last_verified": "2026-05-01"},
    ])
    write(root, "regulations", [
        {"id": "pipl", "title": "个人信息保护法", "last_reviewed": "2026-03-01"},
        {"id": "archives", "title": "会计档案管理办法", "last_reviewed": "2025-06-01"},
    ])
    write(root, "training", [
        {"person": "p1", "on": "2026-06-01", "kind": "drill", "topic": "ledger_loss"},
        {"person": "p2", "on": "2025-06-01", "kind": "tabletop"},
        {"person": "p3", "on": "2026-11-01", "kind": "training"},
    ])
    write(root, "raci", {"ledger_loss": {"responsible": ["IT"], "accountable": "管理层", "informed": ["会计部"]}})
    return root


def test_the_gaps_of_a_day_name_each_item_and_why(agency):
    readiness, missing = load_readiness(agency, people={"p1", "p2", "p3"})
    assert missing == []
    gaps = find_gaps(readiness=readiness, today=TODAY, people=["p1", "p2", "p3"],
                     emergency_types=["ledger_loss", "ransomware"])
    found = {(g.register, g.item, g.code) for g in gaps}
    assert found == {
        ("supplies", "ups-server", "check_overdue"),   # due 2026-10-01
        ("supplies", "ups-server", "expiring"),        # within 30 days
        ("supplies", "ukey-a", "expired"),
        ("supplies", "ukey-a", "short"),                # 0 on hand, 1 needed
        ("supplies", "offline-kit", "never_checked"),
        ("resources", "insurer", "verification_overdue"),
        ("regulations", "archives", "review_overdue"),
        ("training", "p2", "no_recent_drill"),          # a tabletop 18 months ago
        ("training", "p3", "no_recent_drill"),          # training is not a drill
        ("raci", "ransomware", "raci_missing"),
    }
    ups = next(g for g in gaps if g.code == "check_overdue")
    assert ups.due == date(2026, 10, 1) and "63 day(s) overdue" in ups.message
    # a day later in the year the spare laptops fall due too
    later = find_gaps(readiness=readiness, today=date(2027, 1, 1), people=[], emergency_types=[])
    assert ("supplies", "laptop-spare", "check_overdue") in {(g.register, g.item, g.code) for g in later}


def test_missing_registers_are_gaps_not_errors(tmp_path):
    readiness, missing = load_readiness(tmp_path / "agency")
    assert missing == list(FILES)
    gaps = find_gaps(readiness=readiness, today=TODAY, people=["p1"], emergency_types=["ledger_loss"],
                     missing=missing)
    assert [g.code for g in gaps].count("register_missing") == len(FILES)
    assert {"no_recent_drill", "raci_missing"} <= {g.code for g in gaps}


@pytest.mark.parametrize(("register", "content", "field", "words"), [
    ("supplies", [{"id": "x", "kind": "spaceship", "name": "n"}], "0.kind", "Input should be"),
    ("supplies", [{"id": "x", "kind": "ups", "name": "a"}, {"id": "x", "kind": "ups", "name": "b"}], None,
     "listed twice"),
    ("resources", [{"id": "v", "kind": "vendor", "name": "n", "contact": {"person": "王"}}], "0.contact",
     "a phone or an email"),
    ("regulations", [{"id": "r", "title": "t", "last_reviewed": "soon"}], "0.last_reviewed", "date"),
    ("raci", {"ledger_loss": {"responsible": [], "accountable": "管理层"}}, "ledger_loss.responsible", "at least 1"),
    ("training", {"person": "p1"}, None, "expected a YAML list"),
])
def test_a_wrong_register_names_its_file_and_field(tmp_path, register, content, field, words):
    path = write(tmp_path / "agency", register, content)
    with pytest.raises(ReadinessError) as error:
        load_readiness(tmp_path / "agency")
    assert error.value.file == str(path) and error.value.field == field
    assert words in str(error.value)


def test_a_training_record_of_someone_not_in_contacts_is_refused(agency):
    with pytest.raises(ReadinessError) as error:
        load_readiness(agency, people={"p1", "p2"})
    assert error.value.field == "2.person" and "'p3'" in str(error.value)


def _roster(rotations, overrides=()):
    from ledgerguard.channels.contacts import Contacts
    from ledgerguard.oncall import parse_roster

    people = [{"id": pid, "name": pid, "roles": ["it"], "email": f"{pid}@agency.example"} for pid in ("a", "b", "c")]
    contacts = Contacts.model_validate({"people": people})
    roster = parse_roster({"rotations": rotations, "overrides": list(overrides)}, source="roster.yaml",
                          contacts=contacts)
    return roster, contacts


def test_on_call_load_counts_hours_and_flags_a_single_cover_or_an_uneven_share():
    from datetime import datetime

    from ledgerguard.readiness.service import oncall_gaps, oncall_load

    start = datetime(2026, 10, 5, 9, 0)
    even, contacts = _roster({"it": {"kind": "daily", "members": ["a", "b"], "handover": "09:00",
                                     "start": "2026-10-05"}})
    assert oncall_load(roster=even, contacts=contacts, start=start, days=28) == {"it": {"a": 336.0, "b": 336.0}}
    assert oncall_gaps(roster=even, contacts=contacts, start=start) == []

    # b covers every shift for three weeks, then its own turns: 504 + 4 × 24 of 672 hours
    heavy, contacts = _roster({"it": {"kind": "daily", "members": ["a", "b"], "handover": "09:00",
                                      "start": "2026-10-05"}},
                              [{"person": "b", "role": "it", "from": "2026-10-05 09:00", "to": "2026-10-26 09:00",
                                "reason": "a 休假"}])
    (gap,) = oncall_gaps(roster=heavy, contacts=contacts, start=start)
    assert (gap.code, gap.data["person"], gap.data["hours"]) == ("uneven_load", "b", 600.0)

    alone, contacts = _roster({"it": {"kind": "weekly", "members": ["c"], "start": "2026-10-05"}})
    (gap,) = oncall_gaps(roster=alone, contacts=contacts, start=start)
    assert (gap.code, gap.item, gap.data["person"]) == ("single_cover", "it", "c")
