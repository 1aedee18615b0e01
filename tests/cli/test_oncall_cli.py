"""`ledgerguard oncall`: who is on call now and next per role, quiet hours, masked phone numbers."""

from __future__ import annotations

import re

import pytest
import yaml
from typer.testing import CliRunner

from ledgerguard import cli
from ledgerguard.cli import app

runner = CliRunner()


@pytest.fixture
def roster_people(agency_dir, monkeypatch):
    """A fixed roster over the sample agency's people (the generated one follows the wall clock)."""
    monkeypatch.setattr(cli.console, "width", 200)
    people = yaml.safe_load((agency_dir / "contacts.yaml").read_text(encoding="utf-8"))["people"]
    by_role = lambda role: [p for p in people if role in p["roles"]]  # noqa: E731
    lead, manager, it = by_role("duty_lead")[0], by_role("manager")[0], by_role("it")[0]
    roster = {
        "rotations": {
            "duty_lead": {"kind": "weekly", "members": [lead["id"], manager["id"]], "handover": "09:00",
                          "start": "2026-10-05"},
            "it": {"kind": "daily", "members": [it["id"], lead["id"]], "handover": "09:00", "start": "2026-10-05"},
        },
        "overrides": [{"person": it["id"], "role": "duty_lead", "from": "2026-10-10 09:00",
                       "to": "2026-10-11 09:00", "reason": "周六调休值班"}],
        "quiet_hours": {"hours": "21:00-08:00", "levels": [4]},
    }
    path = agency_dir / "oncall" / "roster.yaml"
    path.write_text(yaml.safe_dump(roster, allow_unicode=True), encoding="utf-8")
    return {"lead": lead, "manager": manager, "it": it, "path": path}


def flat(text: str) -> str:
    return " ".join(text.split())


def test_oncall_shows_now_next_and_quiet_hours_in_chinese(roster_people):
    lead, manager, it = roster_people["lead"], roster_people["manager"], roster_people["it"]
    # Friday 2026-10-09 23:00: lead's week (since Monday 10-05); IT: day 5 of the daily turn → it.
    result = runner.invoke(app, ["oncall", "--at", "2026-10-09T23:00:00+08:00"])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "值班表 2026-10-09 23:00（Asia/Shanghai）" in out
    duty_row = next(line for line in result.output.splitlines() if "duty_lead" in line)
    assert lead["name"] in duty_row and "2026-10-10 09:00" in duty_row and it["name"] in duty_row  # the override
    it_row = next(line for line in result.output.splitlines() if "│ it " in line)
    assert it["name"] in it_row.split("│")[2] and lead["name"] in it_row.split("│")[4]
    assert "静默时段 21:00-08:00" in out and "四级等待" in out
    assert "现在在静默时段内" in out and "2026-10-10 08:00" in out
    assert manager["name"] not in duty_row


def test_phone_numbers_are_masked(roster_people):
    result = runner.invoke(app, ["oncall", "--at", "2026-10-09T23:00:00+08:00", "--days", "3"])
    assert result.exit_code == 0, result.output
    for person in (roster_people["lead"], roster_people["it"]):
        assert person["phone"] not in result.output
        assert f"{person['phone'][:3]}****{person['phone'][-4:]}" in result.output
    assert re.search(r"1[3-9]\d{9}", result.output) is None


def test_days_lists_the_shifts_with_the_override(roster_people):
    result = runner.invoke(app, ["oncall", "--at", "2026-10-09T23:00", "--days", "3"])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "未来 3 天排班" in out and "周六调休值班" in out
    override_row = next(line for line in result.output.splitlines() if "周六调休值班" in line)
    assert "2026-10-10 09:00" in override_row and "2026-10-11 09:00" in override_row
    assert roster_people["it"]["name"] in override_row


def test_english_and_outside_quiet_hours(roster_people, monkeypatch):
    monkeypatch.setenv("LEDGERGUARD_LANGUAGE", "en")
    # 10:00 on the 调休 Saturday 2026-10-10: a working day, outside the window; the override is on.
    result = runner.invoke(app, ["oncall", "--at", "2026-10-10T02:00:00+00:00"])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "On call at 2026-10-10 10:00 (Asia/Shanghai)" in out
    assert "override: 周六调休值班" in out
    assert "Quiet hours 21:00-08:00 (Level 4 waits" in out
    assert "Now is outside quiet hours (today is a working day)" in out


def test_a_holiday_is_quiet_all_day(roster_people):
    result = runner.invoke(app, ["oncall", "--at", "2026-10-01T10:00+08:00"])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "现在在静默时段内（今天是非工作日）" in out and "2026-10-08 08:00" in out


def test_a_bad_roster_names_file_and_field(roster_people):
    path = roster_people["path"]
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["rotations"]["it"]["members"].append("ghost")
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = runner.invoke(app, ["oncall", "--at", "2026-10-09T23:00"])
    assert result.exit_code == 1
    out = "".join(result.output.split())
    assert "roster.yaml" in out and "rotations.it.members.2" in out and "ghost" in out


def test_a_bad_moment_is_refused(roster_people):
    result = runner.invoke(app, ["oncall", "--at", "next friday"])
    assert result.exit_code == 2
    assert "ISO 8601" in result.output


def test_the_sample_roster_works_without_at(agency_dir, monkeypatch):
    monkeypatch.setattr(cli.console, "width", 200)
    result = runner.invoke(app, ["oncall", "--days", "2"])
    assert result.exit_code == 0, result.output
    assert "duty_lead" in result.output and "it" in result.output and "静默时段" in result.output
