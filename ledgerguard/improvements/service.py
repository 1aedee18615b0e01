"""Raise, close and list improvement items. Keyword-only, Prefect-free; the caller owns the
transaction. Each change goes on the incident's timeline when the item belongs to one.

A finding is raised by a stable ``source_key``: found again while its item is open, it joins
that item (``times_seen``, ``last_seen_at``) instead of opening another, so a weekly check does
not pile up copies of the same gap; once closed, finding it again opens a new item.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledgerguard.register import service as register
from ledgerguard.register.models import ImprovementItem, as_utc, new_id, utcnow

__all__ = ["SOURCES", "close_item", "get_item", "list_items", "overdue_items", "raise_item"]

SOURCES = ("readiness", "drill", "incident", "postmortem")


def get_item(*, db_session: Session, item_id: str) -> ImprovementItem:
    row = db_session.get(ImprovementItem, item_id, populate_existing=True)
    if row is None:
        raise register.NotFound(f"improvement item {item_id!r} not found in the register")
    return row


def _open_by_key(db_session: Session, source_key: str) -> ImprovementItem | None:
    return db_session.scalars(select(ImprovementItem).where(ImprovementItem.open_key == source_key)
                              .execution_options(populate_existing=True)).first()


def raise_item(*, db_session: Session, source: str, source_key: str, title: str, owner: str, due_at: datetime,
               detail: str = "", incident_id: str | None = None,
               now: datetime | None = None) -> tuple[ImprovementItem, bool]:
    """Open an item for a finding, or join the open one with the same ``source_key``.
    Returns ``(item, created)``. The due date and owner of an open item are a person's to change:
    finding it again does not move them."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    if not source_key.strip() or not title.strip() or not owner.strip():
        raise ValueError("an improvement item needs a source_key, a title and an owner")
    now = as_utc(now) if now else utcnow()
    existing = _open_by_key(db_session, source_key)
    if existing is None:
        candidate = ImprovementItem(
            id=new_id(), source=source, source_key=source_key, open_key=source_key, title=title.strip(),
            detail=detail, owner=owner, due_at=as_utc(due_at), status="open", opened_at=now, last_seen_at=now,
            times_seen=1, resolution="", incident_id=incident_id)
        row, created = register.insert_or_fetch(db_session, candidate, lambda: _open_by_key(db_session, source_key))
        if created:
            if incident_id:
                register.append_timeline(
                    db_session=db_session, incident_id=incident_id, stage="record", kind="improvement.opened",
                    message=f"improvement item: {row.title} (owner {owner}, due {row.due_at.date().isoformat()})",
                    actor="ledgerguard", data={"item_id": row.id, "source_key": source_key})
            return row, True
        existing = row
    existing.times_seen = (existing.times_seen or 0) + 1
    existing.last_seen_at = now
    db_session.flush()
    return existing, False


def close_item(*, db_session: Session, item_id: str, by: str, resolution: str,
               now: datetime | None = None) -> ImprovementItem:
    """A person closes the item and says what was done; closing twice keeps the first closing."""
    row = get_item(db_session=db_session, item_id=item_id)
    if row.status == "closed":
        return row
    if not resolution.strip():
        raise ValueError(f"closing improvement item {item_id!r} needs a resolution: what was done")
    row.status, row.open_key = "closed", None
    row.closed_at, row.closed_by, row.resolution = as_utc(now) if now else utcnow(), by, resolution.strip()
    db_session.flush()
    if row.incident_id:
        register.append_timeline(
            db_session=db_session, incident_id=row.incident_id, stage="record", kind="improvement.closed",
            message=f"improvement item closed by {by}: {row.title} — {row.resolution}", actor=by,
            data={"item_id": row.id})
    return row


def list_items(*, db_session: Session, open_only: bool = False, source: str | None = None) -> list[ImprovementItem]:
    query = select(ImprovementItem).order_by(ImprovementItem.due_at, ImprovementItem.opened_at)
    if open_only:
        query = query.where(ImprovementItem.status == "open")
    if source:
        query = query.where(ImprovementItem.source == source)
    return list(db_session.scalars(query))


def overdue_items(*, db_session: Session, now: datetime | None = None) -> list[ImprovementItem]:
    """Open items past their due date."""
    now = as_utc(now) if now else utcnow()
    return [item for item in list_items(db_session=db_session, open_only=True) if as_utc(item.due_at) < now]
