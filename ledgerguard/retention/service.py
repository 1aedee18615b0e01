"""Retention (保管期限) of incident records, and the purge that removes them once it has ended.

An incident's record holds evidence of several kinds (catalog/retention.yaml maps each type's
``records:`` to kinds); it is kept until the end of the longest period of those kinds, counted from
when it was closed (by default from 1 January after that accounting year, 会计档案管理办法 Art. 15).
An open incident, a permanent kind and a type without a mapping are never purgeable.

``purge`` removes what may go, in one transaction, only when a verified export archive holds it:
every row of every table that references the incident, its reports folder, and its timeline entries,
each replaced by a tombstone (seq, prev_hash, hash) so the register-wide hash chain still verifies;
one ``PurgeRecord`` per incident says what went, how long it was kept, who purged it and why, and
which archive holds it now. It decides again inside its own transaction, on the real clock.

Keyword-only, Prefect-free.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, time, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, delete, event, select, text, update
from sqlalchemy.orm import Session

from ledgerguard.backups import sha256_file
from ledgerguard.register.models import (
    Base,
    ImprovementItem,
    Incident,
    PurgeRecord,
    TimelineEntry,
    TimelineTombstone,
    as_utc,
    new_id,
    utcnow,
)
from ledgerguard.retention.models import PurgeItem, PurgePlan, PurgeResult, RetentionPolicy, RetentionStatus

if TYPE_CHECKING:
    from ledgerguard.catalog.service import Catalog

__all__ = ["PurgeInputError", "NoRetentionPolicy", "assess", "ended_at", "retain_until", "retention_report",
           "plan_purge", "archive_problems", "purge", "incident_kinds"]

OPEN_STATUSES = ("open", "acknowledged", "mitigated")
_LISTED_ARCHIVE_PROBLEMS = 5


class PurgeInputError(ValueError):
    """The purge was asked badly: no selection or two, an unknown incident, no person or reason."""


class NoRetentionPolicy(LookupError):
    """The catalog carries no retention.yaml."""


def _policy(catalog: "Catalog") -> RetentionPolicy:
    if catalog.retention is None:
        raise NoRetentionPolicy("the catalog has no retention.yaml: no incident can be judged purgeable")
    return catalog.retention


def _zone(tz: tzinfo | str | None) -> tzinfo:
    if tz is None:
        from ledgerguard.config import get_settings

        tz = get_settings().timezone
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def _plus_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year without one: keep it a day longer, never shorter
        return date(day.year + years, 3, 1)


def ended_at(incident: Incident) -> datetime | None:
    """When the incident's handling ended: the later of resolved and closed (a later close counts)."""
    stamps = [as_utc(t) for t in (incident.resolved_at, incident.closed_at) if t is not None]
    return max(stamps) if stamps else None


def incident_kinds(*, catalog: "Catalog", incident: Incident) -> list[str]:
    """The record kinds the incident holds; KeyError when its type has no retention mapping."""
    policy = _policy(catalog)
    if incident.drill:
        return policy.kinds_for([], drill=True)
    entry = catalog.entries.get(incident.emergency_type)
    if entry is None:
        raise KeyError(f"emergency type {incident.emergency_type!r} is not in the catalog")
    return policy.kinds_for(entry.records, drill=False)




def assess(*, incident: Incident, catalog: "Catalog", now: datetime | None = None,
           tz: tzinfo | str | None = None) -> RetentionStatus:
    """How long ``incident``'s record is kept and whether it may be purged as of ``now``."""
    policy = _policy(catalog)
    zone = _zone(tz)
    now = as_utc(now) if now else utcnow()
    base: dict[str, Any] = dict(incident_id=incident.id, emergency_type=incident.emergency_type,
                                title=incident.title or "", status=incident.status, drill=bool(incident.drill),
                                opened_at=incident.opened_at, ended_at=ended_at(incident), as_of=now)
    try:
        kinds = incident_kinds(catalog=catalog, incident=incident)
    except KeyError as exc:
        return RetentionStatus(**base, purgeable=False,
                               reason=f"no retention mapping: {exc.args[0]}; kept until retention.yaml maps it")
    governing = policy.longest(kinds)
    kind = policy.kinds[governing]
    base.update(kinds=kinds, governing_kind=governing, years=kind.years, permanent=kind.permanent)
    # every kind whose period is the longest: the refusal names them all (tax_returns and the baseline…)
    longest = [k for k in kinds if (policy.kinds[k].permanent, policy.kinds[k].years) == (kind.permanent, kind.years)]
    what = f"{incident.emergency_type}{' drill' if incident.drill else ''} holds {', '.join(longest)}"
    if incident.status in OPEN_STATUSES:
        return RetentionStatus(**base, purgeable=False,
                               reason=f"still open ({incident.status}): an open incident is never purged")
    if kind.permanent:
        return RetentionStatus(**base, purgeable=False, reason=f"{what}: kept permanently ({kind.source})")
    end = base["ended_at"]
    if end is None:
        return RetentionStatus(**base, purgeable=False,
                               reason=f"{incident.status} without a close date: its period cannot be counted")
    local_end = end.astimezone(zone)
    if policy.counted_from == "accounting_year_end":
        start = datetime.combine(date(local_end.year + 1, 1, 1), time(0), tzinfo=zone)
        until = datetime.combine(_plus_years(start.date(), kind.years), time(0), tzinfo=zone)
        counted = f"counted from {start.date().isoformat()} (after the year it closed, 会计档案管理办法 Art. 15)"
    else:
        until = datetime.combine(_plus_years(local_end.date(), kind.years), local_end.timetz())
        counted = f"counted from its close on {local_end.date().isoformat()}"
    until = as_utc(until)
    base["retain_until"] = until
    until_day = until.astimezone(zone).date().isoformat()
    if now < until:
        return RetentionStatus(**base, purgeable=False,
                               reason=f"{what}: {kind.years} years ({kind.source}), {counted}: kept until {until_day}")
    return RetentionStatus(**base, purgeable=True,
                           reason=f"retention ended {until_day}: {what}, {kind.years} years, {counted}")


def retain_until(*, incident: Incident, catalog: "Catalog", tz: tzinfo | str | None = None) -> datetime | None:
    """The end of the longest period of the incident's kinds, counted from its close; None when it
    is never purgeable as it stands (still open, a permanent kind, or no retention mapping)."""
    return assess(incident=incident, catalog=catalog, tz=tz).retain_until


def retention_report(*, db_session: Session, catalog: "Catalog", now: datetime | None = None,
                     tz: tzinfo | str | None = None) -> list[RetentionStatus]:
    """Every incident of the register with its retention, oldest first."""
    incidents = db_session.scalars(select(Incident).order_by(Incident.opened_at, Incident.id))
    return [assess(incident=i, catalog=catalog, now=now, tz=tz) for i in incidents]


# --- the archive that must hold what goes ---------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _pk_keys(model: type[Base]) -> list[str]:
    mapper = model.__mapper__
    return [mapper.get_property_by_column(c).key for c in mapper.primary_key]


def archive_problems(*, db_session: Session, archive: Path | None, incident_ids: list[str],
                     reports_dir: Path | None) -> tuple[list[str], dict[str, list[str]]]:
    """Why ``archive`` cannot stand in for these incidents' records: problems of the whole archive
    (missing, does not verify), and per incident what the register holds that the archive lacks —
    its incident record, any row of the tables the archive exports, a timeline entry that differs,
    a report file. Both empty when the archive holds every one of them, intact."""
    from ledgerguard.archive.service import INCIDENT_TABLES, MANIFEST, verify_archive

    if archive is None:
        return ["no archive given: a purge needs a verified export archive holding the incidents "
                "(ledgerguard export)"], {}
    root = Path(archive)
    problems = verify_archive(root)
    if problems:
        listed = "; ".join(str(p) for p in problems[:_LISTED_ARCHIVE_PROBLEMS])
        more = f" (+{len(problems) - _LISTED_ARCHIVE_PROBLEMS} more)" if len(problems) > _LISTED_ARCHIVE_PROBLEMS else ""
        return [f"archive {root} does not verify: {listed}{more}"], {}
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    files: dict[str, dict[str, Any]] = manifest.get("files", {})
    archived_incidents = {r.get("id") for r in _read_jsonl(root / "records" / "incidents.jsonl")}
    per: dict[str, list[str]] = {i: [] for i in incident_ids}
    wanted = [i for i in incident_ids if i in archived_incidents]
    for incident_id in incident_ids:
        if incident_id not in archived_incidents:
            per[incident_id].append(f"the archive {root} does not hold incident {incident_id} "
                                    "(export the range it was opened in)")
    if not wanted:
        return [], per
    for model in INCIDENT_TABLES:
        table = model.__tablename__
        keys = _pk_keys(model)
        archived: dict[str, dict[tuple, dict[str, Any]]] = {i: {} for i in wanted}
        for row in _read_jsonl(root / "records" / f"{table}.jsonl"):
            if row.get("incident_id") in archived:
                archived[row["incident_id"]][tuple(row.get(k) for k in keys)] = row
        for obj in db_session.scalars(select(model).where(model.incident_id.in_(wanted))):
            held = archived[obj.incident_id].get(tuple(getattr(obj, k) for k in keys))
            if held is None:
                per[obj.incident_id].append(f"the archive lacks {table} row {'/'.join(map(str, (getattr(obj, k) for k in keys)))} "
                                            "(written after the export?): export again")
            elif model is TimelineEntry and held.get("hash") != obj.hash:
                per[obj.incident_id].append(f"timeline entry #{obj.seq} in the archive differs from the register's")
    for incident_id in wanted:
        folder = Path(reports_dir) / incident_id if reports_dir else None
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = f"reports/{incident_id}/{path.relative_to(folder).as_posix()}"
            meta = files.get(name)
            if meta is None or meta.get("sha256") != sha256_file(path):
                per[incident_id].append(f"report {name} is not in the archive as it is now: export again")
    return [], per


# --- planning -------------------------------------------------------------------------------------


def _selected(db_session: Session, *, before: datetime | None, incident_ids: list[str] | None,
              lock: bool, now: datetime) -> tuple[list[Incident], list[PurgeItem]]:
    if (before is None) == (not incident_ids):
        raise PurgeInputError("give either before (a date) or incident ids, not both and not neither")
    query = select(Incident).order_by(Incident.opened_at, Incident.id)
    if before is not None:
        query = query.where(Incident.opened_at < as_utc(before))
    else:
        query = query.where(Incident.id.in_(list(dict.fromkeys(incident_ids or []))))
    if lock:
        query = query.with_for_update()  # PostgreSQL: no one changes them while we decide; SQLite: no-op
    incidents = list(db_session.scalars(query))
    gone: list[PurgeItem] = []
    if incident_ids:
        found = {i.id for i in incidents}
        for incident_id in dict.fromkeys(incident_ids):
            if incident_id in found:
                continue
            record = db_session.scalars(select(PurgeRecord).where(PurgeRecord.incident_id == incident_id)
                                        .order_by(PurgeRecord.purged_at.desc()).limit(1)).first()
            if record is None:
                raise PurgeInputError(f"unknown incident {incident_id!r}: not in the register")
            gone.append(PurgeItem(incident_id=incident_id, emergency_type=record.emergency_type, status="purged",
                                  opened_at=record.opened_at, ended_at=record.closed_at,
                                  retain_until=record.retain_until, as_of=now, purgeable=False,
                                  reason=f"already purged on {record.purged_at.date().isoformat()} by "
                                         f"{record.purged_by} (purge {record.id})"))
    return incidents, gone


def plan_purge(*, db_session: Session, catalog: "Catalog", before: datetime | None = None,
               incident_ids: list[str] | None = None, now: datetime | None = None, tz: tzinfo | str | None = None,
               archive: Path | None = None, reports_dir: Path | None = None, lock: bool = False) -> PurgePlan:
    """What a purge of the incidents opened before ``before`` (or of ``incident_ids``) would remove
    and what it refuses, each refusal with its reason. With ``archive`` the archive is checked too
    (a purge always checks it). Changes nothing."""
    now = as_utc(now) if now else utcnow()
    incidents, gone = _selected(db_session, before=before, incident_ids=incident_ids, lock=lock, now=now)
    items = [PurgeItem(**assess(incident=i, catalog=catalog, now=now, tz=tz).model_dump()) for i in incidents]

    # The chain's newest entry cannot become a tombstone: the next append links to the newest *entry*,
    # so it would fork the chain at the tombstone's seq. It waits until something else is written.
    head = db_session.execute(select(TimelineEntry.seq, TimelineEntry.incident_id)
                              .order_by(TimelineEntry.seq.desc()).limit(1)).first()
    for item in items:
        if item.purgeable and head is not None and head.incident_id == item.incident_id:
            item.purgeable = False
            item.reason = (f"it holds the register's newest timeline entry #{head.seq}: the chain's head cannot be "
                           "replaced by a tombstone; purge it once a later entry is written")

    if archive is not None or lock:
        overall, per = archive_problems(db_session=db_session, archive=archive, reports_dir=reports_dir,
                                        incident_ids=[i.incident_id for i in items if i.purgeable])
        for item in items:
            if not item.purgeable:
                continue
            item.archive_problems = overall + per.get(item.incident_id, [])
            if item.archive_problems:
                item.purgeable = False
                item.reason = "not in a verified archive: " + "; ".join(item.archive_problems)
    return PurgePlan(as_of=now, archive=str(archive) if archive is not None else None, items=gone + items)


# --- purging --------------------------------------------------------------------------------------


def _children(table: Table) -> list[tuple[Table, str, str]]:
    """(table, its column, the referenced column of ``table``) for every foreign key pointing at ``table``."""
    found = []
    for child in Base.metadata.sorted_tables:
        for fk in child.foreign_keys:
            if fk.column.table is table:
                found.append((child, fk.parent.name, fk.column.name))
    return found


_TIMELINE = TimelineEntry.__table__
_IMPROVEMENTS = ImprovementItem.__table__
_INCIDENTS = Incident.__table__


def _delete_rows(db_session: Session, table: Table, condition: Any, counts: dict[str, int]) -> None:
    """Delete the rows of ``table`` matching ``condition`` and, first, every row referencing them
    (found from the schema's foreign keys, so a table added later is not left dangling)."""
    for child, column, referenced in _children(table):
        if child is _TIMELINE:
            continue  # replaced by tombstones by the caller, deliberately outside the ORM
        sub = select(table.c[referenced]).where(condition)
        if child is _IMPROVEMENTS:
            # An improvement item is the agency's follow-up, not the incident's record: it outlives the
            # incident (detached) so a lesson or an open action is not purged with it.
            result = db_session.execute(update(child).where(child.c[column].in_(sub)).values({column: None}))
            counts["improvement_items_detached"] = counts.get("improvement_items_detached", 0) + result.rowcount
            continue
        _delete_rows(db_session, child, child.c[column].in_(sub), counts)
    result = db_session.execute(delete(table).where(condition))
    counts[table.name] = counts.get(table.name, 0) + result.rowcount


def _stage_reports(db_session: Session, folder: Path, purge_id: str) -> int:
    """Move the incident's reports folder aside now, delete it when the transaction commits, and
    put it back if it rolls back: files are not transactional, the register is."""
    if not folder.is_dir():
        return 0
    count = sum(1 for p in folder.rglob("*") if p.is_file())
    staged = folder.with_name(f".purging-{purge_id}-{folder.name}")
    folder.rename(staged)

    def committed(_session: Session) -> None:
        shutil.rmtree(staged, ignore_errors=True)

    def rolled_back(_session: Session) -> None:
        if staged.is_dir() and not folder.exists():
            staged.rename(folder)

    event.listen(db_session, "after_commit", committed, once=True)
    event.listen(db_session, "after_rollback", rolled_back, once=True)
    return count


def purge(*, db_session: Session, catalog: "Catalog", by: str, reason: str, archive: Path | None,
          reports_dir: Path, before: datetime | None = None, incident_ids: list[str] | None = None,
          tz: tzinfo | str | None = None) -> PurgeResult:
    """Remove the selected incidents whose retention has ended and that ``archive`` (a verified export)
    holds; refuse the rest, with the reason. Everything happens in the caller's transaction.

    There is no ``now``: the decision is taken again here on the real clock, so nothing inside its
    period can be purged by asking with a later date (``plan_purge`` may look ahead, this may not)."""
    by, reason = (by or "").strip(), (reason or "").strip()
    if not by:
        raise PurgeInputError("by: say who purges (a person of contacts.yaml)")
    if not reason:
        raise PurgeInputError("reason: say why the records are purged")
    policy = _policy(catalog)
    if db_session.get_bind().dialect.name == "postgresql":
        # The appenders' lock: no entry is written while we check the chain's head and cut entries out
        # (SQLite's BEGIN IMMEDIATE already holds the only write lock).
        from ledgerguard.register.service import TIMELINE_LOCK_KEY

        db_session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": TIMELINE_LOCK_KEY})
    plan = plan_purge(db_session=db_session, catalog=catalog, before=before, incident_ids=incident_ids, tz=tz,
                      archive=archive, reports_dir=reports_dir, lock=True)
    result = PurgeResult(plan=plan)
    if not plan.to_purge:
        return result
    root = Path(archive).resolve()  # type: ignore[arg-type]  # to_purge is empty without an archive
    label = f"{root} (manifest.json sha256 {sha256_file(root / 'manifest.json')})"
    now = utcnow()
    for item in plan.to_purge:
        result.purges.append(_purge_one(db_session, policy=policy, item=item, by=by, reason=reason, archive=label,
                                        reports_dir=Path(reports_dir), now=now))
    return result


def _purge_one(db_session: Session, *, policy: RetentionPolicy, item: PurgeItem, by: str, reason: str,
               archive: str, reports_dir: Path, now: datetime) -> dict[str, Any]:
    incident_id = item.incident_id
    record = PurgeRecord(
        id=new_id(), incident_id=incident_id, emergency_type=item.emergency_type, opened_at=item.opened_at,
        closed_at=item.ended_at, retain_until=item.retain_until, purged_at=now, purged_by=by, reason=reason,
        record_kinds=[{"kind": k, "years": policy.kinds[k].years, "permanent": policy.kinds[k].permanent,
                       "source": policy.kinds[k].source} for k in item.kinds],
        counts={}, archive=archive)
    db_session.add(record)
    db_session.flush()
    entries = db_session.execute(select(_TIMELINE.c.seq, _TIMELINE.c.prev_hash, _TIMELINE.c.hash)
                                 .where(_TIMELINE.c.incident_id == incident_id).order_by(_TIMELINE.c.seq)).all()
    db_session.add_all([TimelineTombstone(seq=e.seq, incident_id=incident_id, prev_hash=e.prev_hash, hash=e.hash,
                                          purge_id=record.id) for e in entries])
    db_session.flush()
    counts: dict[str, int] = {}
    # Every table that references the incident (signals with their outbox rows, findings, notifications,
    # runbook actions, obligations, flow-run links, approvals, ack links, drills, check-ins, post-mortem
    # reviews, notice drafts…), children first; improvement items are detached.
    for child, column, _referenced in _children(_INCIDENTS):
        if child is _TIMELINE:
            continue
        if child is _IMPROVEMENTS:
            res = db_session.execute(update(child).where(child.c[column] == incident_id).values({column: None}))
            counts["improvement_items_detached"] = res.rowcount
            continue
        _delete_rows(db_session, child, child.c[column] == incident_id, counts)
    # The one place timeline entries are deleted. The ORM guards (models.py) refuse it through the
    # Session on purpose; a purge goes below them, on the session's own connection (same transaction),
    # because each entry is replaced by its tombstone above — the chain keeps every seq and hash — and
    # only after the retention check, the verified archive and the purge record.
    deleted = db_session.connection().execute(_TIMELINE.delete().where(_TIMELINE.c.incident_id == incident_id))
    if deleted.rowcount != len(entries):
        raise RuntimeError(f"incident {incident_id}: {deleted.rowcount} timeline entries deleted but "
                           f"{len(entries)} tombstoned; rolled back")
    counts["timeline_entries"] = deleted.rowcount
    counts["incidents"] = db_session.execute(delete(Incident).where(Incident.id == incident_id)
                                             .execution_options(synchronize_session=False)).rowcount
    for obj in [o for o in db_session.identity_map.values() if getattr(o, "incident_id", None) == incident_id
                or (isinstance(o, Incident) and o.id == incident_id)]:
        if not isinstance(obj, (PurgeRecord, TimelineTombstone)):
            db_session.expunge(obj)
    counts["report_files"] = _stage_reports(db_session, reports_dir / incident_id, record.id)
    record.counts = counts
    db_session.flush()
    return {"purge_id": record.id, "incident_id": incident_id, "emergency_type": item.emergency_type,
            "retain_until": item.retain_until, "kinds": item.kinds, "counts": counts,
            "tombstones": len(entries)}
