"""Notifications reach the person on call for a role on a rotation, not every holder of it."""

from __future__ import annotations

from datetime import datetime, timezone

import yaml


def _runtime():
    from ledgerguard.runtime import get_runtime, reset_runtime

    reset_runtime()
    return get_runtime()


def test_a_rotated_role_reaches_only_the_person_on_call(agency_dir):
    from ledgerguard.response.notifying import route

    runtime = _runtime()
    entry = runtime.catalog.get("etax_outage")  # level 1: duty_lead, manager, accountants, owner
    people = runtime.contacts.people
    leads = [p.id for p in people if "duty_lead" in p.roles]
    others = [p.id for p in people if "duty_lead" not in p.roles and p.email][:2]
    roster_path = agency_dir / "oncall" / "roster.yaml"
    roster_path.parent.mkdir(parents=True, exist_ok=True)
    members = others + leads
    roster_path.write_text(yaml.safe_dump({"rotations": {"duty_lead": {
        "members": members, "kind": "daily", "handover": "09:00", "start": "2026-11-02"}}}), encoding="utf-8")
    runtime = _runtime()

    at = datetime(2026, 11, 2, 3, 0, tzinfo=timezone.utc)  # 11:00 in Shanghai: the first member's day
    routing = route(runtime=runtime, entry=entry, level=1, affected_clients=[], at=at)
    by_role = {}
    for r in routing.recipients:
        by_role.setdefault(r.role, set()).add(r.person_id)
    assert by_role["duty_lead"] == {members[0]}
    # a role without a rotation still reaches everyone who holds it
    assert by_role["manager"] == {p.id for p in people if "manager" in p.roles}
    next_day = route(runtime=runtime, entry=entry, level=1, affected_clients=[],
                     at=datetime(2026, 11, 3, 3, 0, tzinfo=timezone.utc))
    assert {r.person_id for r in next_day.recipients if r.role == "duty_lead"} == {members[1]}


def test_without_a_roster_every_holder_of_the_role_is_reached(agency_dir):
    from ledgerguard.response.notifying import route

    (agency_dir / "oncall" / "roster.yaml").unlink(missing_ok=True)
    runtime = _runtime()
    assert runtime.roster is None
    routing = route(runtime=runtime, entry=runtime.catalog.get("etax_outage"), level=1, affected_clients=[])
    leads = {p.id for p in runtime.contacts.people if "duty_lead" in p.roles}
    assert {r.person_id for r in routing.recipients if r.role == "duty_lead"} == leads
