"""Staff check-ins after 一级/二级 incidents: the service (who handled it, who has not checked in)
and `ledgerguard checkin INCIDENT --by PERSON --status …`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ledgerguard import cli
from ledgerguard.cli import app
from ledgerguard.readiness import checkins
from ledgerguard.register import service as register
from tests.readiness.support import people_of, plant_incident

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def runtime(agency_dir, monkeypatch):
    from ledgerguard.runtime import get_runtime

    monkeypatch.setattr(cli.console, "width", 200)
    monkeypatch.setattr(cli.err, "width", 200)
    return get_runtime()


@pytest.fixture
def ids(agency_dir) -> list[str]:
    return [p["id"] for p in people_of(agency_dir)]


def test_a_check_in_is_recorded_once_per_person_and_every_one_goes_on_the_timeline(runtime, ids):
    incident_id = plant_incident(runtime, acknowledged_by=ids[0])
    with runtime.session() as s:
        row, created = checkins.record_checkin(db_session=s, contacts=runtime.contacts, incident_id=incident_id,
                                               person_id=ids[0], status="needs_support", note="连续加班两天")
        assert created and row.status == "needs_support"
    with runtime.session() as s:
        row, created = checkins.record_checkin(db_session=s, contacts=runtime.contacts, incident_id=incident_id,
                                               person_id=ids[0], status="ok", via="ui")
        assert not created and (row.status, row.note, row.via) == ("ok", "", "ui")
    with runtime.session() as s:
        assert [(c.person_id, c.status) for c in checkins.list_checkins(db_session=s, incident_id=incident_id)] \
            == [(ids[0], "ok")]
        entries = [e for e in register.get_timeline(db_session=s, incident_id=incident_id)
                   if e.kind == "staff.checked_in"]
        assert [(e.actor, e.data["status"], e.data["first"]) for e in entries] == \
            [(ids[0], "needs_support", True), (ids[0], "ok", False)]
        assert "连续加班两天" in entries[0].message


@pytest.mark.parametrize(("case", "words"), [
    ("person", ["nobody.here", "contacts.yaml"]),
    ("incident", ["'feedface'", "not found in the register"]),
    ("level", ["level 3", "level 1 and 2"]),
    ("status", ["status must be one of ok, needs_support, unavailable", "'fine'"]),
])
def test_a_check_in_that_cannot_be_recorded_names_what_is_wrong(runtime, ids, case, words):
    from ledgerguard.acknowledgement.service import UnknownPerson

    incident_id = plant_incident(runtime, level=3 if case == "level" else 1)
    args = {"incident_id": incident_id, "person_id": ids[0], "status": "ok"}
    if case == "person":
        args["person_id"] = "nobody.here"
    elif case == "incident":
        args["incident_id"] = "feedface"
    elif case == "status":
        args["status"] = "fine"
    expected = {"person": UnknownPerson, "incident": register.NotFound}.get(case, checkins.CheckinRefused)
    with runtime.session() as s, pytest.raises(expected) as error:
        checkins.record_checkin(db_session=s, contacts=runtime.contacts, **args)
    assert all(w in str(error.value) for w in words), str(error.value)
    with runtime.session() as s:
        assert checkins.list_checkins(db_session=s, incident_id=incident_id) == []


def test_involved_people_are_who_acknowledged_was_notified_or_decided(runtime, ids):
    incident_id = plant_incident(runtime, acknowledged_by=ids[2], notified=(ids[0], ids[2], "C0001"),
                                 decided_by=ids[1])
    with runtime.session() as s:
        # the report to management (record stage) informs, it does not make a responder
        key = "report-key"
        register.claim_notification(db_session=s, key=key, incident_id=incident_id, stage="record",
                                    recipient=f"{ids[5]}:email:{ids[5]}@agency.example", channel="email",
                                    step="report", template="report", subject="x")
        register.mark_notification_sent(db_session=s, key=key)
        assert checkins.involved_people(db_session=s, incident_id=incident_id, contacts=runtime.contacts) == \
            [ids[2], ids[0], ids[1]]
        # without contacts a client's notification counts as a recipient too
        assert "C0001" in checkins.involved_people(db_session=s, incident_id=incident_id)


def test_missing_check_ins_are_asked_of_real_level_1_and_2_incidents_only(runtime, ids):
    waiting = plant_incident(runtime, resource="ledger:C0001", notified=(ids[0], ids[1]))
    plant_incident(runtime, resource="ledger:C0002", notified=(ids[0],), drill=True)             # a drill
    plant_incident(runtime, resource="ledger:C0003", notified=(ids[0],), level=3)                # 三级
    plant_incident(runtime, resource="ledger:C0004", notified=(ids[0],), status=None, opened_days_ago=1)  # in grace
    long_open = plant_incident(runtime, resource="ledger:C0005", notified=(ids[3],), status=None, opened_days_ago=5,
                               level=2)
    with runtime.session() as s:
        found = checkins.missing_checkins(db_session=s, contacts=runtime.contacts)
        # oldest first: the incident open for five days, then the one resolved yesterday
        assert [(m.incident_id, m.people) for m in found] == [(long_open, [ids[3]]), (waiting, [ids[0], ids[1]])]
        checkins.record_checkin(db_session=s, contacts=runtime.contacts, incident_id=waiting, person_id=ids[0],
                                status="ok")
        checkins.record_checkin(db_session=s, contacts=runtime.contacts, incident_id=waiting, person_id=ids[1],
                                status="unavailable", note="病假")
    with runtime.session() as s:
        found = checkins.missing_checkins(db_session=s, contacts=runtime.contacts)
    assert [m.incident_id for m in found] == [long_open]
    (gap,) = checkins.checkin_gaps(found)
    assert (gap.register, gap.item, gap.code, gap.data["people"], gap.data["level"]) == \
        ("checkins", long_open, "checkin_missing", [ids[3]], 2)


def test_checkin_cli_by_id_prefix_records_and_updates(runtime, ids, lg_home):
    incident_id = plant_incident(runtime, notified=(ids[0],))
    result = runner.invoke(app, ["checkin", incident_id[:8], "--by", ids[0], "--status", "needs_support",
                                 "--note", "需要调休一天", "--home", str(lg_home)])
    assert result.exit_code == 0, result.output
    output = flat(result.output)
    assert "已记录报到" in output and incident_id in output and "需要支持" in output and "需要调休一天" in output
    again = runner.invoke(app, ["checkin", incident_id, "--by", ids[0], "--status", "ok"])
    assert again.exit_code == 0, again.output
    assert "已更新报到" in flat(again.output) and "状态良好" in flat(again.output)
    with runtime.session() as s:
        assert [(c.person_id, c.status, c.via) for c in checkins.list_checkins(db_session=s, incident_id=incident_id)] \
            == [(ids[0], "ok", "cli")]


@pytest.mark.parametrize(("case", "code", "words"), [
    ("person", 1, ["nobody.here", "contacts.yaml"]),
    ("incident", 1, ["登记簿中没有事件", "'feedfacecafe'"]),
    ("level", 1, ["三级", "一级/二级"]),
    ("status", 2, ["--status", "'fine'", "needs_support"]),
])
def test_checkin_cli_refuses_with_a_clear_message(runtime, ids, case, code, words):
    incident_id = plant_incident(runtime, level=3 if case == "level" else 1)
    args = ["checkin", "feedfacecafe" if case == "incident" else incident_id,
            "--by", "nobody.here" if case == "person" else ids[0],
            "--status", "fine" if case == "status" else "ok"]
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    output = flat(result.output)
    assert all(w in output for w in words), output
    with runtime.session() as s:
        assert checkins.list_checkins(db_session=s, incident_id=incident_id) == []


def test_a_check_in_asking_for_support_is_a_gap_until_the_person_is_fine_again(runtime, ids):
    from ledgerguard.readiness.texts import describe

    incident_id = plant_incident(runtime, notified=(ids[0], ids[1]))
    with runtime.session() as s:
        checkins.record_checkin(db_session=s, contacts=runtime.contacts, incident_id=incident_id, person_id=ids[0],
                                status="needs_support", note="连续通宵，需要调休")
        checkins.record_checkin(db_session=s, contacts=runtime.contacts, incident_id=incident_id, person_id=ids[1],
                                status="ok")
    with runtime.session() as s:
        (request,) = checkins.support_requests(db_session=s)
    (gap,) = checkins.checkin_gaps([], [request])
    assert (gap.register, gap.item, gap.code) == ("checkins", f"{incident_id}:{ids[0]}", "support_requested")
    names = {p.id: p.name for p in runtime.contacts.people}
    text = describe(gap, language="zh-CN", names=names, type_names={"ledger_loss": "账套数据丢失"})
    assert names[ids[0]] in text and "需要支持" in text and "连续通宵，需要调休" in text and "一级" in text
    with runtime.session() as s:
        checkins.record_checkin(db_session=s, contacts=runtime.contacts, incident_id=incident_id, person_id=ids[0],
                                status="ok")
    with runtime.session() as s:
        assert checkins.support_requests(db_session=s) == []
