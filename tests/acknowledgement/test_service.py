"""acknowledge(): first and later acknowledgements, a mitigated incident, and two at the same moment."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import yaml

from ledgerguard.acknowledgement.service import UnknownPerson, acknowledge, check_person, mtta_seconds
from ledgerguard.models import IncidentStatus, Signal
from ledgerguard.register import service as register
from ledgerguard.register.audit import verify_chain
from ledgerguard.register.models import Incident


@pytest.fixture
def runtime(lg_home):
    from ledgerguard.runtime import get_runtime

    return get_runtime()


def _open(runtime, resource: str = "ledger:C0001") -> str:
    with runtime.session() as s:
        incident, _ = register.open_or_join_incident(
            db_session=s, title="凭证数骤降", signal=Signal(source="test", emergency_type="ledger_loss", resource=resource))
        return incident.id


def test_second_acknowledgement_is_kept_but_changes_nothing(runtime):
    incident_id = _open(runtime)
    with runtime.session() as s:
        opened_at = s.get(Incident, incident_id).opened_at
        first = acknowledge(db_session=s, incident_id=incident_id, by="wang.fang", via="cli", note="我来",
                            at=opened_at + timedelta(minutes=5))
    assert first.first is True and first.status == "acknowledged" and first.acknowledged_via == "cli"
    with runtime.session() as s:
        again = acknowledge(db_session=s, incident_id=incident_id, by="li.na", via="link",
                            at=opened_at + timedelta(minutes=9))
    assert again.first is False and again.acknowledged_by == "wang.fang" and again.acknowledged_via == "cli"
    assert again.acknowledged_at == first.acknowledged_at == opened_at + timedelta(minutes=5)

    with runtime.session() as s:
        incident = s.get(Incident, incident_id)
        assert incident.acknowledged_at == opened_at + timedelta(minutes=5)
        assert (incident.acknowledged_by, incident.acknowledged_via, incident.status) == ("wang.fang", "cli",
                                                                                          "acknowledged")
        assert mtta_seconds(incident) == 300
        timeline = register.get_timeline(db_session=s, incident_id=incident_id)
        kinds = [e.kind for e in timeline]
        assert kinds.count("acknowledged") == 1 and kinds.count("acknowledged.again") == 1
        again_entry = next(e for e in timeline if e.kind == "acknowledged.again")
        assert again_entry.actor == "li.na" and again_entry.data == {"by": "li.na", "via": "link", "note": ""}
        acked = next(e for e in timeline if e.kind == "acknowledged")
        assert acked.data["mtta_seconds"] == 300 and "5.0 min" in acked.message and "我来" in acked.message
        assert verify_chain(db_session=s) == []


def test_a_mitigated_incident_keeps_its_status_but_gets_acknowledged_at(runtime):
    incident_id = _open(runtime)
    with runtime.session() as s:
        register.set_status(db_session=s, incident_id=incident_id, status=IncidentStatus.MITIGATED, actor="flow")
    with runtime.session() as s:
        result = acknowledge(db_session=s, incident_id=incident_id, by="wang.fang", via="ui")
    assert result.first is True and result.status == "mitigated"
    with runtime.session() as s:
        incident = s.get(Incident, incident_id)
        assert incident.status == "mitigated" and incident.acknowledged_at is not None
        assert incident.acknowledged_by == "wang.fang" and mtta_seconds(incident) is not None
        statuses = [e.data["to"] for e in register.get_timeline(db_session=s, incident_id=incident_id)
                    if e.kind == "status"]
        assert statuses == ["mitigated"]


def test_two_acknowledgements_at_the_same_moment_have_exactly_one_first(runtime):
    incident_id = _open(runtime)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker(person: str) -> None:
        try:
            barrier.wait(timeout=10)
            with runtime.session() as s:
                results.append(acknowledge(db_session=s, incident_id=incident_id, by=person, via="api"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in ("wang.fang", "li.na")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(r.first for r in results) == [False, True]
    winner = next(r for r in results if r.first).acknowledged_by
    assert {r.acknowledged_by for r in results} == {winner}
    with runtime.session() as s:
        assert s.get(Incident, incident_id).acknowledged_by == winner
        kinds = [e.kind for e in register.get_timeline(db_session=s, incident_id=incident_id)]
        assert kinds.count("acknowledged") == 1 and kinds.count("acknowledged.again") == 1
        assert verify_chain(db_session=s) == []


def test_unknown_incident_channel_and_person_are_refused(runtime, agency_dir):
    with runtime.session() as s, pytest.raises(register.NotFound):
        acknowledge(db_session=s, incident_id="0" * 32, by="wang.fang", via="cli")
    incident_id = _open(runtime)
    with runtime.session() as s, pytest.raises(ValueError, match="via must be one of"):
        acknowledge(db_session=s, incident_id=incident_id, by="wang.fang", via="carrier-pigeon")
    people = [p["id"] for p in yaml.safe_load((agency_dir / "contacts.yaml").read_text(encoding="utf-8"))["people"]]
    assert check_person(contacts=runtime.contacts, person_id=f" {people[0]} ") == people[0]
    with pytest.raises(UnknownPerson) as refused:
        check_person(contacts=runtime.contacts, person_id="nobody.here")
    assert "nobody.here" in str(refused.value) and all(p in str(refused.value) for p in people)
