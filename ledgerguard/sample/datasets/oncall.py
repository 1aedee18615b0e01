"""Sample on-call roster (``oncall/roster.yaml``): the duty lead rotates weekly, IT daily, one
override (a day of leave covered by a colleague), quiet hours 21:00–08:00 in which 四级 waits.

When only one person holds ``duty_lead`` the managers and IT join its rotation; when only one
person is in IT the duty lead (the agency's IT lead) backs them up on alternate days.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import yaml

from ledgerguard.oncall.models import Roster
from ledgerguard.oncall.service import DEFAULT_ROSTER_FILE, on_call_id

NAME = "oncall"
HANDOVER = time(9, 0)


def _ids_with(people: list[dict[str, Any]], *roles: str) -> list[str]:
    return [p["id"] for p in people if set(roles) & set(p.get("roles", []))]


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def generate(ctx) -> dict[str, Any]:
    agency = ctx.agency
    people = [p.model_dump() for p in agency.contacts.people]
    names = {p["id"]: p["name"] for p in people}
    local = ctx.local_now
    tz = ctx.tz

    duty = _ids_with(people, "duty_lead")
    if len(duty) < 2:
        duty = _unique(duty + _ids_with(people, "manager") + _ids_with(people, "it"))
    it = _ids_with(people, "it")
    if len(it) < 2:
        it = _unique(it + _ids_with(people, "duty_lead"))
    if not duty or not it:   # a contacts.yaml without these roles: no roster rather than a bad one
        return {"roster": None, "reason": "no duty_lead/it people in contacts.yaml"}

    # Rotations began on the Monday four weeks before "now", so the sample has history.
    monday = local.date() - timedelta(days=local.weekday() + 28)
    rotations = {
        "duty_lead": {"kind": "weekly", "members": duty, "handover": f"{HANDOVER:%H:%M}",
                      "start": monday},
        "it": {"kind": "daily", "members": it, "handover": f"{HANDOVER:%H:%M}", "start": monday},
    }
    # Tomorrow's duty lead takes a day of leave; the next member of the rotation covers it.
    cover_from = datetime.combine(local.date() + timedelta(days=1), HANDOVER, tzinfo=tz)
    plain = Roster.model_validate({"timezone": agency.config.timezone, "rotations": rotations})
    on_leave = on_call_id(roster=plain, role="duty_lead", at=cover_from)
    cover = duty[(duty.index(on_leave) + 1) % len(duty)]
    overrides = []
    if cover != on_leave:
        overrides.append({
            "person": cover, "role": "duty_lead",
            "from": cover_from.isoformat(), "to": (cover_from + timedelta(days=1)).isoformat(),
            "reason": f"{names[on_leave]} 请假一天，{names[cover]} 代班",
        })
    roster = {
        "timezone": agency.config.timezone,
        "rotations": rotations,
        "overrides": overrides,
        "quiet_hours": {"hours": "21:00-08:00", "levels": [4], "non_working_days": True},
    }
    path = agency.data_file("roster", DEFAULT_ROSTER_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# On-call roster: rotations per role, overrides, quiet hours (四级 waits; 一级/二级 always go out)\n"
                    + yaml.safe_dump(roster, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return {"roster": str(path), "roles": list(rotations), "overrides": len(overrides)}
