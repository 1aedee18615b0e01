"""The weekly readiness flow, in-process under the Prefect test harness: the sample agency is
ready; planted gaps become exactly those gaps, improvement items with owners and due dates and
one report per management address and week."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.readiness.planted import local_today, plant_gaps
from tests.readiness.support import plant_drill

pytestmark = pytest.mark.prefect


def _subjects(sink) -> list[str]:
    return [str(m["Subject"]) for m in sink.messages()]


def _management(agency_dir: Path) -> list[str]:
    import yaml

    return yaml.safe_load((agency_dir / "contacts.yaml").read_text(encoding="utf-8"))["management_list"]


def _readiness_items(runtime) -> list:
    from ledgerguard.improvements import service as items

    with runtime.session() as s:
        return items.list_items(db_session=s, open_only=True, source="readiness")


def test_the_sample_agency_is_ready_and_the_week_is_reported_once(live_unattended):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows import readiness
    from ledgerguard.runtime import get_runtime

    sink, agency_dir = live_unattended["sink"], live_unattended["agency_dir"]
    outcome = readiness()
    assert outcome.gaps == [] and outcome.no_longer_found == []
    assert sorted(outcome.sent) == sorted(_management(agency_dir)) and outcome.skipped == []
    subjects = _subjects(sink)
    assert len(subjects) == len(_management(agency_dir))
    assert all("准备度周报" in s and "各项登记均在有效期内" in s for s in subjects), subjects
    assert Path(outcome.report_path).is_file() and outcome.week in outcome.report_path
    assert _readiness_items(get_runtime()) == []
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["readiness-report"])))
    assert artifacts and "应急准备度周报" in artifacts[0].data


def test_planted_gaps_become_items_and_one_report_a_week(live_unattended):
    from flows import readiness
    from ledgerguard.runtime import get_runtime

    sink, agency_dir = live_unattended["sink"], live_unattended["agency_dir"]
    runtime = get_runtime()
    planted = plant_gaps(agency_dir, runtime)
    expected = planted["expected"]

    first = readiness()
    found = {(g["register"], g["item"], g["code"]): g for g in first.gaps}
    assert set(found) == set(expected)
    assert {key: g["owner"] for key, g in found.items()} == expected
    assert all(g["new"] and date.fromisoformat(g["due_on"]) > local_today() for g in first.gaps)
    checkin = found[("checkins", planted["incident_id"], "checkin_missing")]
    assert checkin["data"]["people"] == planted["involved"]
    items = _readiness_items(runtime)
    assert sorted(i.source_key for i in items) == sorted(f"readiness:{r}:{i}:{c}" for r, i, c in expected)
    assert all(i.owner == expected[tuple(i.source_key.split(":")[1:])] and i.due_at for i in items)
    assert all(i.title.startswith("准备度缺口：") for i in items)
    by_key = {i.source_key: i for i in items}
    assert by_key[f"readiness:checkins:{planted['incident_id']}:checkin_missing"].incident_id == planted["incident_id"]
    subjects = _subjects(sink)
    assert len(subjects) == len(_management(agency_dir))
    assert all("准备度周报" in s and "6 项缺口" in s for s in subjects), subjects
    body = sink.messages()[0].get_body(preferencelist=("plain",)).get_content()
    assert "机房UPS" in body and "《中华人民共和国个人信息保护法》" in body and "尚未报到" in body

    # the same week again: no second email, no copies of the items
    second = readiness()
    assert second.sent == [] and sorted(second.skipped) == sorted(_management(agency_dir))
    assert len(sink.messages()) == len(subjects)
    again = _readiness_items(runtime)
    assert {i.id for i in again} == {i.id for i in items} and all(i.times_seen == 2 for i in again)
    assert not any(g["new"] for g in second.gaps)

    # next week: the person drilled (a scored drill in the register) and everyone checked in
    from ledgerguard.readiness.checkins import record_checkin

    plant_drill(runtime, participants=[planted["undrilled"]])
    with runtime.session() as s:
        for person in planted["involved"]:
            record_checkin(db_session=s, contacts=runtime.contacts, incident_id=planted["incident_id"],
                           person_id=person, status="ok")
    later = readiness(as_of=local_today() + timedelta(days=7))
    assert {(g["register"], g["item"], g["code"]) for g in later.gaps} == \
        {k for k in expected if k[0] not in ("training", "checkins")}
    gone = {tuple(i["source_key"].split(":")[1:]) for i in later.no_longer_found}
    assert gone == {k for k in expected if k[0] in ("training", "checkins")}
    assert len(_readiness_items(runtime)) == len(expected)  # still open: a person closes them
    assert len(later.sent) == len(_management(agency_dir)) and len(sink.messages()) == 2 * len(subjects)


def test_english_by_setting_through_the_cli(live_unattended, monkeypatch):
    from ledgerguard import cli
    from ledgerguard.cli import app
    from ledgerguard.config import reset_settings
    from ledgerguard.runtime import get_runtime, reset_runtime

    monkeypatch.setenv("LEDGERGUARD_LANGUAGE", "en")
    monkeypatch.setattr(cli.console, "width", 200)
    reset_settings()
    reset_runtime()
    plant_gaps(live_unattended["agency_dir"], get_runtime())
    result = CliRunner().invoke(app, ["readiness"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "Readiness" in output and "6 gap(s)" in output and "review was due" in output
    subjects = _subjects(live_unattended["sink"])
    assert subjects and all(s.startswith("[Readiness]") and "6 gap(s)" in s for s in subjects), subjects
    body = live_unattended["sink"].messages()[0].get_body(preferencelist=("plain",)).get_content()
    assert "weekly readiness report" in body and "no check-in yet from" in body and "准备度" not in body


def test_the_readiness_deployment_runs_monday_morning_in_the_agency_zone():
    from deployments import READINESS_CRON, spec

    from ledgerguard.config import PROJECT_ROOT

    readiness = spec("readiness")
    (schedule,) = readiness.to_deployment().schedules
    assert READINESS_CRON == "30 8 * * 1"
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 8 * * 1", "Asia/Shanghai")
    assert readiness.tags == ("readiness",) and readiness.flow.name == "readiness"
    file, function = readiness.entrypoint.split(":")
    assert (PROJECT_ROOT / file).is_file() and function == "readiness"
    import flows

    assert "readiness" in flows.__all__ and "readiness" not in flows.EMERGENCY_FLOWS
