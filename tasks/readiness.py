"""Readiness stages: read the registers (the YAML files and what the register knows: scored
drills, staff check-ins), find the gaps, raise one improvement item per gap, report the week.

``collect`` and ``assess`` are plain functions so `ledgerguard readiness --check-only` can show
the gaps without a flow run; the tasks wrap them.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ledgerguard.channels.contacts import management_recipients
from ledgerguard.channels.messaging import render_message
from ledgerguard.improvements import service as improvements
from ledgerguard.models import Stage, utcnow
from ledgerguard.readiness import checkins as checkin_service
from ledgerguard.readiness.models import Readiness, ReadinessOutcome
from ledgerguard.readiness.service import (FILES, Gap, find_gaps, gap_owner, improvement_due, oncall_gaps,
                                           oncall_load, oncall_window, read_registers, source_key)
from ledgerguard.readiness.texts import ROLE_LABELS, describe, register_label
from ledgerguard.register.models import DrillRecord, as_utc
from ledgerguard.response.notifying import send_once
from ledgerguard.response.reporting import write_text
from ledgerguard.runtime import get_runtime

REGISTER_ORDER = [*FILES, "oncall", "checkins"]
DUE_HOUR = time(18, 0)  # an item is due at the end of the agency's working day
REPORT_TEMPLATE = "readiness_report"


def week_of(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _today(runtime) -> date:
    return datetime.now(timezone.utc).astimezone(runtime.agency.tz).date()


def _drilled_on(db_session, tz) -> dict[str, date]:
    """Each person's latest scored drill in the register (its local start day)."""
    from sqlalchemy import select

    latest: dict[str, date] = {}
    for drill in db_session.scalars(select(DrillRecord).where(DrillRecord.status == "scored")):
        day = as_utc(drill.started_at).astimezone(tz).date()
        for pid in drill.participants or []:  # person ids (finish_drill stores them so)
            latest[pid] = max(day, latest.get(pid, day))
    return latest


def collect(runtime, as_of: date | None = None) -> dict[str, Any]:
    """Everything the check reads, as plain JSON values: the YAML registers (a wrong file is
    kept as its error, so the rest is still checked), contacts, the catalog's types, and from the
    register each person's latest scored drill and the 一级/二级 incidents still waiting for
    check-ins or whose people asked for support."""
    agency, contacts, settings = runtime.agency, runtime.contacts, runtime.settings
    tz = agency.tz
    today = _today(runtime)
    as_of = as_of or today
    # A past (or future) day is judged at its end; today is judged now.
    moment = utcnow() if as_of == today else datetime.combine(as_of, time.max, tzinfo=tz).astimezone(timezone.utc)
    people = [p.id for p in contacts.people]
    readiness, missing, invalid = read_registers(agency.root, people=set(people))
    with runtime.session(read_only=True) as db_session:
        drilled_on = _drilled_on(db_session, tz)
        waiting = checkin_service.missing_checkins(db_session=db_session, contacts=contacts, now=moment)
        support = checkin_service.support_requests(db_session=db_session, now=moment)
    english = settings.language == "en"
    return {
        "as_of": as_of.isoformat(), "week": week_of(as_of), "moment": moment.isoformat(),
        "agency": {"name": agency.config.name},
        "people": people, "names": {p.id: p.name for p in contacts.people},
        "readiness": readiness.model_dump(mode="json"), "missing": missing,
        "invalid": {register: str(error) for register, error in invalid.items()},
        "emergency_types": sorted(runtime.catalog.entries),
        "type_names": {e.id: (e.name.en if english else e.name.zh) for e in runtime.catalog},
        "drilled_on": {pid: day.isoformat() for pid, day in drilled_on.items()},
        "missing_checkins": [{**m.__dict__, "opened_at": m.opened_at.isoformat()} for m in waiting],
        "support_requests": [{**r.__dict__, "checked_in_at": r.checked_in_at.isoformat()} for r in support],
    }


def _owner(runtime, gap: Gap, readiness: Readiness) -> str:
    owner = gap_owner(gap=gap, readiness=readiness, contacts=runtime.contacts)
    if owner:
        return owner
    people = runtime.contacts.people  # a contacts.yaml without IT or a duty lead: its first person
    return people[0].id if people else "unassigned"


def assess(runtime, registers: dict[str, Any]) -> list[dict[str, Any]]:
    """The gaps of the day, each with the owner and due date its improvement item gets and a
    line in the reader's language; ordered by register, then by item."""
    today = date.fromisoformat(registers["as_of"])
    readiness = Readiness.model_validate(registers["readiness"])
    gaps = find_gaps(readiness=readiness, today=today, people=registers["people"],
                     emergency_types=registers["emergency_types"], missing=registers["missing"],
                     invalid=registers["invalid"],
                     drilled_on={pid: date.fromisoformat(day) for pid, day in registers["drilled_on"].items()})
    gaps += checkin_service.checkin_gaps(
        [checkin_service.MissingCheckin(**{**m, "opened_at": datetime.fromisoformat(m["opened_at"])})
         for m in registers["missing_checkins"]],
        [checkin_service.SupportRequest(**{**r, "checked_in_at": datetime.fromisoformat(r["checked_in_at"])})
         for r in registers.get("support_requests", [])])
    roster = runtime.roster
    if roster is not None:
        start = datetime.combine(today, time(0), tzinfo=runtime.agency.tz)
        gaps += oncall_gaps(roster=roster, contacts=runtime.contacts, start=start)
    language = runtime.settings.language
    names, type_names = registers["names"], registers["type_names"]
    rows = []
    for gap in gaps:
        owner = _owner(runtime, gap, readiness)
        rows.append({
            "register": gap.register, "register_label": register_label(gap.register, language),
            "item": gap.item, "code": gap.code, "message": gap.message,
            "due": gap.due.isoformat() if gap.due else None, "data": gap.data,
            "key": source_key(gap), "owner": owner, "owner_name": names.get(owner, owner),
            "due_on": improvement_due(gap=gap, today=today).isoformat(),
            "text": describe(gap, language=language, names=names, type_names=type_names),
        })
    rows.sort(key=lambda r: (REGISTER_ORDER.index(r["register"]) if r["register"] in REGISTER_ORDER else 99,
                             r["item"], r["code"]))
    return rows


def oncall_table(runtime, as_of: date) -> list[dict[str, Any]]:
    """Hours on call per role and person over whole turns of each rotation from ``as_of``."""
    roster = runtime.roster
    if roster is None:
        return []
    language = runtime.settings.language
    start = datetime.combine(as_of, time(0), tzinfo=runtime.agency.tz)
    rows = []
    for role, rotation in roster.rotations.items():
        days = oncall_window(rotation)
        hours = oncall_load(roster=roster, contacts=runtime.contacts, start=start, days=days).get(role, {})
        total = sum(hours.values()) or 1.0
        for person, held in sorted(hours.items(), key=lambda kv: -kv[1]):
            person_obj = runtime.contacts.person(person)
            rows.append({"role": role, "role_label": ROLE_LABELS["en" if language == "en" else "zh-CN"].get(role, role),
                         "person": person, "name": person_obj.name if person_obj else person,
                         "hours": round(held, 1), "share": round(100 * held / total), "days": days})
    return rows


@task(name="readiness-load", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def load_registers(as_of: date | None = None) -> dict[str, Any]:
    """Read the readiness folder and the register's drills and check-ins."""
    registers = collect(get_runtime(), as_of)
    for register, error in registers["invalid"].items():
        get_run_logger().warning("readiness register %s is invalid: %s", register, error)
    return registers


@task(name="readiness-gaps", cache_policy=NO_CACHE)
def find_readiness_gaps(registers: dict[str, Any]) -> list[dict[str, Any]]:
    """Overdue checks, expired items, unverified contacts, regulations past review, people with
    no drill in 12 months, missing check-ins and requests for support, uneven on-call load."""
    gaps = assess(get_runtime(), registers)
    get_run_logger().info("readiness as of %s: %d gap(s)", registers["as_of"], len(gaps))
    return gaps


@task(name="readiness-improvements", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def raise_improvements(registers: dict[str, Any], gaps: list[dict[str, Any]]) -> dict[str, Any]:
    """One improvement item per gap (found again: the open item is joined, not copied). Items
    whose gap is gone stay open — a person closes them, saying what was done — and are listed."""
    runtime = get_runtime()
    tz = runtime.agency.tz
    zh = runtime.settings.language != "en"
    raised, keys = [], set()
    with runtime.session() as db_session:
        for gap in gaps:
            keys.add(gap["key"])
            incident_id = gap["data"].get("incident_id") if gap["register"] == "checkins" else None
            row, created = improvements.raise_item(
                db_session=db_session, source="readiness", source_key=gap["key"],
                title=(f"准备度缺口：{gap['text']}" if zh else f"Readiness gap: {gap['text']}"),
                detail=f"{gap['register']}/{gap['item']} {gap['code']}: {gap['message']}", owner=gap["owner"],
                due_at=datetime.combine(date.fromisoformat(gap["due_on"]), DUE_HOUR, tzinfo=tz),
                incident_id=incident_id)
            raised.append({**gap, "item_id": row.id, "new": created, "times_seen": row.times_seen,
                           "item_owner": row.owner, "item_due_at": row.due_at.isoformat()})
        gone = [{"id": i.id, "title": i.title, "owner": i.owner, "owner_name": _name(runtime, i.owner),
                 "due_at": i.due_at.isoformat(), "opened_at": i.opened_at.isoformat(), "source_key": i.source_key}
                for i in improvements.list_items(db_session=db_session, open_only=True, source="readiness")
                if i.source_key not in keys]
    return {"gaps": raised, "no_longer_found": gone}


def _name(runtime, person_id: str) -> str:
    person = runtime.contacts.person(person_id)
    return person.name if person else person_id


@task(name="readiness-report", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def send_readiness_report(registers: dict[str, Any], raised: dict[str, Any]) -> ReadinessOutcome:
    """The week's readiness report: a file, a Prefect artifact, and one email per management
    address per week (a re-run of the same week sends nothing again)."""
    from tasks.people import ui_run_url

    runtime = get_runtime()
    language = runtime.settings.language
    run_id = str(flow_run.id) if flow_run.id else None
    as_of, week = date.fromisoformat(registers["as_of"]), registers["week"]
    gaps = raised["gaps"]
    readiness = registers["readiness"]
    counts = [{"register": r, "label": register_label(r, language),
               "gaps": sum(1 for g in gaps if g["register"] == r)} for r in REGISTER_ORDER]
    context = {
        "agency": registers["agency"], "as_of": as_of, "week": week,
        "gaps": gaps, "new_gaps": [g for g in gaps if g["new"]],
        "no_longer_found": raised["no_longer_found"], "counts": counts,
        "checked": {"supplies": len(readiness["supplies"]), "resources": len(readiness["resources"]),
                    "regulations": len(readiness["regulations"]), "people": len(registers["people"]),
                    "raci": len(readiness["raci"]), "types": len(registers["emergency_types"])},
        "oncall": oncall_table(runtime, as_of),
        "run": {"url": ui_run_url(run_id) if run_id else None},
    }
    message = render_message(name=REPORT_TEMPLATE, language=language, context=context,
                             templates_dir=runtime.settings.templates_dir)
    folder = runtime.settings.reports_dir / "readiness"
    path = write_text(folder / f"readiness-{week}.html", message.html or message.text)
    write_text(folder / f"readiness-{week}.md", message.markdown or message.text)
    create_markdown_artifact(key="readiness-report", markdown=message.markdown or message.text,
                             description=f"Readiness report {week} (as of {as_of}): {len(gaps)} gap(s)")
    create_table_artifact(key="readiness-gaps",
                          table=[{"register": g["register"], "item": g["item"], "gap": g["text"], "owner": g["owner"],
                                  "due": g["due_on"], "improvement": g["item_id"], "new": g["new"]} for g in gaps],
                          description=f"Readiness gaps {week} (as of {as_of})")
    sent, skipped, failed = [], [], []
    for recipient in management_recipients(runtime.contacts):
        result = send_once(runtime=runtime, incident_id=None, stage=Stage.RECORD, step=f"readiness-report:{week}",
                           recipient=recipient, message=message, template=REPORT_TEMPLATE, flow_run_id=run_id)
        {"sent": sent, "skipped": skipped}.get(result.status, failed).append(
            recipient.address if result.status != "failed" else f"{recipient.address}: {result.error}")
    if failed:
        raise RuntimeError("readiness report delivery failed: " + "; ".join(failed))
    get_run_logger().info("readiness report %s: %d gap(s), sent to %d, already sent to %d",
                          week, len(gaps), len(sent), len(skipped))
    return ReadinessOutcome(as_of=as_of, week=week, gaps=gaps, no_longer_found=raised["no_longer_found"],
                            report_path=str(path), sent=sent, skipped=skipped, flow_run_id=run_id)
