"""The on-call roster: rotations across hand-overs, overrides, hand-over times, bad files."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml

from ledgerguard.oncall import (
    RosterError,
    load_roster,
    next_handover,
    on_call,
    on_call_id,
    parse_roster,
    schedule,
)

from .conftest import roster_data

SH = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


# ------------------------------------------------------------------------------------ rotations
def test_daily_rotation_changes_hands_at_the_handover_time(roster, contacts):
    assert on_call(roster=roster, contacts=contacts, role="it", at=at("2026-10-05 12:00")).name == "赵磊"
    assert on_call_id(roster=roster, role="it", at=at("2026-10-06 08:29")) == "zhaolei"
    assert on_call_id(roster=roster, role="it", at=at("2026-10-06 08:30")) == "chenjing"
    assert on_call_id(roster=roster, role="it", at=at("2026-10-07 08:29:59")) == "chenjing"
    assert on_call_id(roster=roster, role="it", at=at("2026-10-07 08:30")) == "zhaolei"
    assert next_handover(roster=roster, role="it", at=at("2026-10-06 10:00")) == at("2026-10-07 08:30")
    assert next_handover(roster=roster, role="it", at=at("2026-10-06 08:00")) == at("2026-10-06 08:30")


def test_weekly_rotation_changes_hands_on_the_start_weekday(roster):
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-05 09:00")) == "wangfang"
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-10 23:00")) == "wangfang"
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-12 08:59")) == "wangfang"
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-12 09:00")) == "lijun"
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-19 08:59")) == "lijun"
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-19 09:00")) == "wangfang"
    # Before the first hand-over the rotation runs backwards: the week before was lijun's.
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-05 08:59")) == "lijun"
    assert next_handover(roster=roster, role="duty_lead", at=at("2026-10-13 10:00")) == at("2026-10-19 09:00")


def test_aware_moments_in_another_zone_use_the_roster_time_zone(roster):
    utc = datetime(2026, 10, 12, 0, 59, tzinfo=timezone.utc)   # 08:59 in Shanghai
    assert on_call_id(roster=roster, role="duty_lead", at=utc) == "wangfang"
    assert on_call_id(roster=roster, role="duty_lead", at=datetime(2026, 10, 12, 1, 0, tzinfo=timezone.utc)) == "lijun"
    assert next_handover(roster=roster, role="duty_lead", at=utc) == at("2026-10-12 09:00")
    assert next_handover(roster=roster, role="duty_lead", at=utc).tzinfo == SH


# ------------------------------------------------------------------------------------ overrides
def test_override_wins_then_ends(roster, contacts):
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-07 11:59")) == "wangfang"
    assert next_handover(roster=roster, role="duty_lead", at=at("2026-10-07 10:00")) == at("2026-10-07 12:00")
    person = on_call(roster=roster, contacts=contacts, role="duty_lead", at=at("2026-10-07 12:00"))
    assert person.id == "lijun" and person.name == "李军"
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-08 17:59")) == "lijun"
    assert next_handover(roster=roster, role="duty_lead", at=at("2026-10-07 13:00")) == at("2026-10-08 18:00")
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-08 18:00")) == "wangfang"
    # After the override the next change is the weekly hand-over to lijun.
    assert next_handover(roster=roster, role="duty_lead", at=at("2026-10-08 18:00")) == at("2026-10-12 09:00")
    # The override is for duty_lead only.
    assert on_call_id(roster=roster, role="it", at=at("2026-10-07 12:00")) == "zhaolei"


def test_a_later_override_wins_over_an_earlier_one(contacts):
    overrides = roster_data()["overrides"] + [
        {"person": "zhaolei", "role": "duty_lead", "from": "2026-10-08 09:00", "to": "2026-10-08 12:00",
         "reason": "李军 上午外出"}]
    roster = parse_roster(roster_data(overrides=overrides), source="roster.yaml", contacts=contacts)
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-08 08:00")) == "lijun"
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-08 10:00")) == "zhaolei"
    assert on_call_id(roster=roster, role="duty_lead", at=at("2026-10-08 12:00")) == "lijun"


def test_schedule_lists_shifts_with_overrides_for_display(roster, contacts):
    shifts = schedule(roster=roster, contacts=contacts, start=at("2026-10-07 00:00"), days=2)
    duty = [(s.person_id, s.starts, s.ends, s.override_reason) for s in shifts if s.role == "duty_lead"]
    assert duty == [
        ("wangfang", at("2026-10-07 00:00"), at("2026-10-07 12:00"), None),
        ("lijun", at("2026-10-07 12:00"), at("2026-10-08 18:00"), "王芳 外出培训"),
        ("wangfang", at("2026-10-08 18:00"), at("2026-10-09 00:00"), None),
    ]
    it = [(s.person.name, s.starts) for s in shifts if s.role == "it"]
    assert it == [("陈静", at("2026-10-07 00:00")), ("赵磊", at("2026-10-07 08:30")),
                  ("陈静", at("2026-10-08 08:30"))]


# ------------------------------------------------------------------------------------ the sample roster
def test_the_sample_agency_has_a_valid_roster(tmp_path):
    from ledgerguard.agency import load_agency
    from ledgerguard.sample import generate_agency

    # A freshly generated agency (the shared test agency has its quiet hours switched off).
    generate_agency(tmp_path / "agency", clients=3, nights=1, seed=5)
    agency = load_agency(tmp_path / "agency")
    roster = load_roster(agency=agency)
    assert set(roster.rotations) == {"duty_lead", "it"}
    assert roster.rotations["duty_lead"].kind == "weekly" and roster.rotations["it"].kind == "daily"
    assert len(roster.rotations["duty_lead"].members) >= 2 and len(roster.rotations["it"].members) >= 2
    assert roster.timezone == agency.config.timezone
    assert roster.quiet_hours.hours == "21:00-08:00" and roster.quiet_hours.levels == [4]
    (override,) = roster.overrides
    assert override.role == "duty_lead" and override.reason
    assert on_call_id(roster=roster, role="duty_lead", at=override.from_) == override.person
    for role, rotation in roster.rotations.items():
        for pid in rotation.members:
            assert agency.contacts.person(pid) is not None
        start = datetime.combine(rotation.start, rotation.handover, tzinfo=SH)
        assert on_call(roster=roster, contacts=agency.contacts, role=role, at=start).id == rotation.members[0]


def test_data_files_can_move_the_roster(agency):
    source = agency.data_file("roster", "oncall/roster.yaml")
    moved = agency.root / "duty" / "rota.yaml"
    moved.parent.mkdir()
    source.rename(moved)
    with pytest.raises(RosterError, match="not found"):
        load_roster(agency=agency)
    agency.config.data_files["roster"] = "duty/rota.yaml"
    assert set(load_roster(agency=agency).rotations) == {"duty_lead", "it"}


# ------------------------------------------------------------------------------------ bad files
def _write(agency, data) -> str:
    path = agency.data_file("roster", "oncall/roster.yaml")
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def _sample(agency) -> dict:
    return yaml.safe_load(agency.data_file("roster", "oncall/roster.yaml").read_text(encoding="utf-8"))


def test_an_unknown_person_in_a_rotation_names_file_field_and_person(agency):
    data = _sample(agency)
    data["rotations"]["it"]["members"].append("nobody.here")
    path = _write(agency, data)
    with pytest.raises(RosterError) as info:
        load_roster(agency=agency)
    n = len(data["rotations"]["it"]["members"]) - 1
    assert info.value.file == path and info.value.field == f"rotations.it.members.{n}"
    assert "nobody.here" in str(info.value) and path in str(info.value) and "it" in str(info.value)


def test_an_unknown_role_names_file_field_and_role(agency):
    data = _sample(agency)
    data["rotations"]["dutylead"] = data["rotations"].pop("duty_lead")
    data["overrides"] = []
    path = _write(agency, data)
    with pytest.raises(RosterError) as info:
        load_roster(agency=agency)
    assert info.value.file == path and info.value.field == "rotations"
    assert "'dutylead'" in str(info.value) and "unknown role" in str(info.value)


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda d: d["overrides"][0].update(person="ghost"), "overrides.0.person", "ghost"),
    (lambda d: d["overrides"][0].update(role="auditor"), "overrides.0.role", "auditor"),
    (lambda d: d["overrides"][0].update(role="hr"), "overrides.0.role", "no rotation"),
    (lambda d: d["overrides"][0].update(to=d["overrides"][0]["from"]), "overrides.0.to", "must be after"),
    (lambda d: d["rotations"]["it"].update(handover="9am"), "rotations.it.handover", "HH:MM"),
    (lambda d: d["rotations"]["it"].update(kind="monthly"), "rotations.it.kind", "daily"),
    (lambda d: d["rotations"]["it"].update(members=[]), "rotations.it.members", "at least 1"),
    (lambda d: d["rotations"]["it"].pop("start"), "rotations.it.start", "required"),
    (lambda d: d["quiet_hours"].update(levels=[2, 4]), "quiet_hours.levels", "一级/二级"),
    (lambda d: d["quiet_hours"].update(hours="21:00"), "quiet_hours.hours", "HH:MM-HH:MM"),
    (lambda d: d.update(shifts=[]), "shifts", "Extra inputs"),
    (lambda d: d.update(timezone="Mars/Olympus"), "timezone", "unknown time zone"),
])
def test_bad_fields_name_file_and_field(agency, change, field, words):
    data = _sample(agency)
    change(data)
    path = _write(agency, data)
    with pytest.raises(RosterError) as info:
        load_roster(agency=agency)
    assert info.value.file == path and info.value.field == field, str(info.value)
    assert words in str(info.value) and path in str(info.value)


def test_missing_and_unreadable_files_name_the_file(agency):
    path = _write(agency, "rotations: [unclosed")
    with pytest.raises(RosterError, match="not valid YAML") as info:
        load_roster(agency=agency)
    assert info.value.file == path
    _write(agency, "- just a list\n")
    with pytest.raises(RosterError, match="expected a mapping"):
        load_roster(agency=agency)
    agency.data_file("roster", "oncall/roster.yaml").unlink()
    with pytest.raises(RosterError, match="file not found") as info:
        load_roster(agency=agency)
    assert info.value.file == path


def test_unquoted_yaml_times_are_read_as_times(contacts):
    # YAML 1.1 reads an unquoted 21:00 as the number 1260; the roster takes it as 21:00 anyway.
    data = yaml.safe_load("rotations:\n  it: {kind: daily, members: [zhaolei], handover: 21:00, start: 2026-10-05}\n")
    roster = parse_roster(data, source="roster.yaml", contacts=contacts)
    assert roster.rotations["it"].handover.strftime("%H:%M") == "21:00"
    assert next_handover(roster=roster, role="it", at=at("2026-10-05 12:00")) == at("2026-10-05 21:00")


def test_asking_for_a_role_without_a_rotation_says_which_roles_there_are(roster):
    with pytest.raises(RosterError, match="no rotation for role 'hr'.*duty_lead, it"):
        on_call_id(roster=roster, role="hr", at=at("2026-10-07 12:00"))
