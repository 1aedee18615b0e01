"""A sample agency's readiness registers with gaps planted in them, the way they happen."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from ledgerguard.readiness.service import FILES
from tests.readiness.support import plant_incident, with_role


def local_today() -> date:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


def _edit(agency_dir: Path, register: str, change) -> None:
    path = agency_dir / "readiness" / FILES[register]
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    content = change(content) or content
    path.write_text(yaml.safe_dump(content, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _item(items: list[dict], item_id: str) -> dict:
    return next(i for i in items if i["id"] == item_id)


def plant_gaps(agency_dir: Path, runtime) -> dict:
    """An overdue UPS check, an expired UKey, an unverified lawyer, a regulation past review, a
    person with no drill on record, a resolved 一级 incident nobody checked in for. Returns what
    the check should find: {(register, item, code): expected owner}, plus the ids involved."""
    today = local_today()
    undrilled = with_role(agency_dir, "hr")
    _edit(agency_dir, "supplies", lambda s: _item(s, "ups-server").update(last_checked=today - timedelta(days=45)))
    _edit(agency_dir, "supplies", lambda s: _item(s, "ukey-etax-spare").update(expires=today - timedelta(days=3)))
    _edit(agency_dir, "resources", lambda r: _item(r, "law-firm").update(last_verified=today - timedelta(days=200)))
    _edit(agency_dir, "regulations", lambda r: _item(r, "pipl").update(last_reviewed=today - timedelta(days=400)))
    _edit(agency_dir, "training", lambda t: [r for r in t if r["person"] != undrilled])
    duty, it = with_role(agency_dir, "duty_lead"), with_role(agency_dir, "it")
    incident_id = plant_incident(runtime, acknowledged_by=duty, notified=(duty, it))
    manager = with_role(agency_dir, "manager")
    expected = {
        ("supplies", "ups-server", "check_overdue"): it,                       # the item's owner: it
        ("supplies", "ukey-etax-spare", "expired"): manager,                   # the item's owner: manager
        ("resources", "law-firm", "verification_overdue"): with_role(agency_dir, "legal"),
        ("regulations", "pipl", "review_overdue"): with_role(agency_dir, "data_protection"),
        ("training", undrilled, "no_recent_drill"): duty,                      # nobody's item: the duty lead
        ("checkins", incident_id, "checkin_missing"): manager,                 # ledger_loss RACI: accountable
    }
    return {"expected": expected, "incident_id": incident_id, "undrilled": undrilled, "involved": [duty, it]}
