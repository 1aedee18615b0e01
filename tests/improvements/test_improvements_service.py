"""Improvement items in the register: one open item per finding, closed by a person with a resolution."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ledgerguard.improvements.service import close_item, list_items, overdue_items, raise_item
from ledgerguard.models import Signal
from ledgerguard.register import service as register

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def db_session(lg_home):
    from ledgerguard.runtime import get_runtime

    with get_runtime().session() as session:
        yield session


def test_a_finding_found_again_joins_its_open_item_and_after_closing_opens_a_new_one(db_session):
    key = "readiness:supplies:ups-1:check_overdue"
    item, created = raise_item(db_session=db_session, source="readiness", source_key=key, title="UPS 检查逾期",
                               owner="lijun", due_at=NOW + timedelta(days=7), now=NOW)
    assert created and item.status == "open" and item.times_seen == 1
    again, created = raise_item(db_session=db_session, source="readiness", source_key=key, title="UPS 检查逾期",
                                owner="someone-else", due_at=NOW + timedelta(days=1), now=NOW + timedelta(days=7))
    assert not created and again.id == item.id and again.times_seen == 2
    assert (again.owner, again.due_at) == ("lijun", NOW + timedelta(days=7))   # a person's to change
    assert [i.id for i in overdue_items(db_session=db_session, now=NOW + timedelta(days=8))] == [item.id]

    with pytest.raises(ValueError, match="needs a resolution"):
        close_item(db_session=db_session, item_id=item.id, by="lijun", resolution=" ")
    closed = close_item(db_session=db_session, item_id=item.id, by="lijun", resolution="已更换电池并自检通过")
    assert (closed.status, closed.closed_by, closed.open_key) == ("closed", "lijun", None)
    assert close_item(db_session=db_session, item_id=item.id, by="x", resolution="y").closed_by == "lijun"

    fresh, created = raise_item(db_session=db_session, source="readiness", source_key=key, title="UPS 检查逾期",
                                owner="lijun", due_at=NOW + timedelta(days=30))
    assert created and fresh.id != item.id
    assert [i.id for i in list_items(db_session=db_session, open_only=True)] == [fresh.id]
    assert len(list_items(db_session=db_session, source="readiness")) == 2


def test_an_item_of_an_incident_goes_on_its_timeline(db_session):
    incident, _ = register.open_or_join_incident(
        db_session=db_session, signal=Signal(source="drill", emergency_type="ledger_loss", resource="ledger:C0001"),
        title="drill")
    item, _ = raise_item(db_session=db_session, source="drill", source_key=f"drill:{incident.id}:rto",
                         title="恢复超出RTO", owner="zhaolei", due_at=NOW, incident_id=incident.id)
    close_item(db_session=db_session, item_id=item.id, by="zhaolei", resolution="恢复脚本改为并行校验")
    kinds = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=incident.id)]
    assert kinds[-2:] == ["improvement.opened", "improvement.closed"]


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"source": "gossip"}, "source must be one of"),
    ({"owner": ""}, "needs a source_key, a title and an owner"),
])
def test_an_item_without_its_facts_is_refused(db_session, kwargs, words):
    args = {"source": "readiness", "source_key": "k", "title": "t", "owner": "o", "due_at": NOW, **kwargs}
    with pytest.raises(ValueError, match=words):
        raise_item(db_session=db_session, **args)
