"""Verify the register's hash-chained timeline.

Every timeline entry carries ``hash`` = sha256 over its content and ``prev_hash`` (the hash of the
entry with ``seq - 1``); each incident remembers how many entries it has and the hash of its
newest one. ``verify_chain`` recomputes all of it and names what does not add up:

- ``edited``       an entry's stored hash differs from the hash of its stored content
- ``broken link``  an entry's ``prev_hash`` differs from the hash of the entry before it
- ``deleted``      a gap in ``seq``; ``missing`` lists the absent sequence numbers
- ``tail deleted`` an incident's ``timeline_head`` is not the hash of its newest entry (its last
                   entries were removed — including the last entry of the whole register)
- ``count mismatch`` an incident's ``timeline_count`` disagrees with its entries in a way no gap
                   explains
- ``tombstone mismatch`` a tombstone (what a purge leaves of an entry: seq, prev_hash, hash) that
                   does not fit the chain: its prev_hash is not its predecessor's hash, the next
                   entry does not carry its hash, it lies over a live entry, or its incident is still
                   in the register

Tombstones are the chain's known hashes: a tombstoned seq is not "deleted", and the links across
it are checked as across any entry (its content is gone, so only its place and hashes are).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledgerguard.register.models import GENESIS_HASH, Incident, PurgeRecord, TimelineEntry, TimelineTombstone, entry_hash

EDITED = "edited"
BROKEN_LINK = "broken link"
DELETED = "deleted"
TAIL_DELETED = "tail deleted"
COUNT_MISMATCH = "count mismatch"
TOMBSTONE_MISMATCH = "tombstone mismatch"

_MAX_LISTED_MISSING = 1000
_HASHED = ("seq", "incident_id", "occurred_at", "stage", "kind", "actor", "message", "data", "flow_run_id",
           "prev_hash")
_ENTRY_COLUMNS = ("id", *_HASHED, "hash")


def _ranges(numbers: tuple[int, ...]) -> str:
    parts: list[str] = []
    start = prev = None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            parts.append(f"#{start}" if start == prev else f"#{start}–#{prev}")
            start = prev = n
    if start is not None:
        parts.append(f"#{start}" if start == prev else f"#{start}–#{prev}")
    return ", ".join(parts)


@dataclass(frozen=True)
class ChainProblem:
    """One inconsistency in the timeline chain."""

    seq: int | None
    entry_id: str | None
    incident_id: str | None
    problem: str
    detail: str = ""
    missing: tuple[int, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        if self.problem == DELETED:
            where = f"timeline entries {_ranges(self.missing)} deleted"
        elif self.problem == TOMBSTONE_MISMATCH:
            where = f"timeline tombstone #{self.seq} does not fit the chain"
        elif self.seq is not None:
            where = f"timeline entry #{self.seq} {self.problem}"
        else:
            where = f"timeline {self.problem}"
        if self.incident_id:
            where += f" (incident {self.incident_id})"
        return f"{where}: {self.detail}" if self.detail else where


def verify_chain(*, db_session: Session) -> list[ChainProblem]:
    """Check the whole register's timeline; an empty list means the chain is intact."""
    problems: list[ChainProblem] = []
    expected_seq = 1
    prev_hash: str | None = None  # hash of the entry (or tombstone) with seq == expected_seq - 1
    prev_tombstone: TimelineTombstone | None = None  # set when that predecessor is a tombstone
    total_missing = 0
    per_incident: dict[str, tuple[int, str, int]] = {}  # id -> (count, newest hash, newest seq)

    # Tombstones are few (one per purged entry) and read whole; entries are streamed in seq order.
    tombstones = list(db_session.scalars(select(TimelineTombstone).order_by(TimelineTombstone.seq)))
    purged = dict(db_session.execute(select(PurgeRecord.id, PurgeRecord.incident_id)).all()) if tombstones else {}
    live_incidents = set(db_session.scalars(
        select(Incident.id).where(Incident.id.in_({t.incident_id for t in tombstones})))) if tombstones else set()
    pending = iter(tombstones)
    next_tombstone = next(pending, None)

    def gap_to(seq: int, entry_id: str | None) -> None:
        nonlocal expected_seq, total_missing
        if seq <= expected_seq:
            return
        missing = tuple(range(expected_seq, min(seq, expected_seq + _MAX_LISTED_MISSING)))
        total_missing += seq - expected_seq
        more = seq - expected_seq - len(missing)
        problems.append(ChainProblem(
            seq=expected_seq,
            entry_id=entry_id,
            incident_id=None,
            problem=DELETED,
            detail=f"the chain jumps to #{seq}" + (f" ({more} more missing)" if more else ""),
            missing=missing,
        ))

    def take_tombstone(tomb: TimelineTombstone) -> None:
        nonlocal expected_seq, prev_hash, prev_tombstone
        jumped = tomb.seq > expected_seq
        gap_to(tomb.seq, None)

        def misfit(detail: str) -> None:
            problems.append(ChainProblem(seq=tomb.seq, entry_id=None, incident_id=tomb.incident_id,
                                         problem=TOMBSTONE_MISMATCH, detail=detail))

        if tomb.seq == 1 and tomb.prev_hash != GENESIS_HASH:
            misfit("the first seq does not start from the genesis hash")
        elif not jumped and prev_hash is not None and tomb.prev_hash != prev_hash:
            misfit(f"its prev_hash {tomb.prev_hash[:12]}… is not the hash of #{tomb.seq - 1} ({prev_hash[:12]}…)")
        if tomb.incident_id in live_incidents:
            misfit("its incident is still in the register: tombstones stand only for purged incidents")
        if purged.get(tomb.purge_id) != tomb.incident_id:
            misfit(f"its purge record {tomb.purge_id} is for another incident ({purged.get(tomb.purge_id)})")
        expected_seq = tomb.seq + 1
        prev_hash = tomb.hash
        prev_tombstone = tomb

    columns = [TimelineEntry.__table__.c[name] for name in _ENTRY_COLUMNS]
    entries = db_session.execute(
        select(*columns).order_by(TimelineEntry.seq).execution_options(yield_per=1000)
    )
    for entry in entries:
        while next_tombstone is not None and next_tombstone.seq <= entry.seq:
            if next_tombstone.seq == entry.seq:
                problems.append(ChainProblem(
                    seq=entry.seq, entry_id=entry.id, incident_id=next_tombstone.incident_id,
                    problem=TOMBSTONE_MISMATCH, detail=f"it lies over the live entry #{entry.seq} "
                                                       f"(incident {entry.incident_id})"))
            else:
                take_tombstone(next_tombstone)
            next_tombstone = next(pending, None)
        if entry.seq > expected_seq:
            gap_to(entry.seq, entry.id)
        elif entry.seq == 1 and entry.prev_hash != GENESIS_HASH:
            problems.append(ChainProblem(
                seq=entry.seq, entry_id=entry.id, incident_id=entry.incident_id, problem=BROKEN_LINK,
                detail="the first entry does not start from the genesis hash",
            ))
        elif prev_hash is not None and entry.prev_hash != prev_hash:
            recomputed_here = entry_hash(**{name: getattr(entry, name) for name in _HASHED})
            if prev_tombstone is not None and recomputed_here == entry.hash:
                # The entry is intact, so the hash it carries is the true one of #seq-1: the tombstone lies.
                problems.append(ChainProblem(
                    seq=prev_tombstone.seq, entry_id=None, incident_id=prev_tombstone.incident_id,
                    problem=TOMBSTONE_MISMATCH,
                    detail=f"its hash {prev_hash[:12]}… is not what #{entry.seq} carries as prev_hash "
                           f"({entry.prev_hash[:12]}…)",
                ))
            else:
                problems.append(ChainProblem(
                    seq=entry.seq, entry_id=entry.id, incident_id=entry.incident_id, problem=BROKEN_LINK,
                    detail=f"prev_hash {entry.prev_hash[:12]}… is not the hash of #{entry.seq - 1} ({prev_hash[:12]}…)",
                ))

        recomputed = entry_hash(**{name: getattr(entry, name) for name in _HASHED})
        if recomputed != entry.hash:
            problems.append(ChainProblem(
                seq=entry.seq, entry_id=entry.id, incident_id=entry.incident_id, problem=EDITED,
                detail=f"stored hash {entry.hash[:12]}… but its content hashes to {recomputed[:12]}…",
            ))

        count = per_incident.get(entry.incident_id, (0, "", 0))[0]
        per_incident[entry.incident_id] = (count + 1, entry.hash, entry.seq)
        expected_seq = entry.seq + 1
        prev_hash = entry.hash
        prev_tombstone = None
    while next_tombstone is not None:  # tombstones after the newest entry
        take_tombstone(next_tombstone)
        next_tombstone = next(pending, None)

    rows = db_session.execute(
        select(Incident.id, Incident.timeline_count, Incident.timeline_head).order_by(Incident.opened_at, Incident.id)
    )
    for incident_id, recorded_count, head in rows:
        found_count, newest_hash, newest_seq = per_incident.get(incident_id, (0, None, None))
        recorded_count = recorded_count or 0
        if (head or None) != newest_hash:
            problems.append(ChainProblem(
                seq=newest_seq, entry_id=None, incident_id=incident_id, problem=TAIL_DELETED,
                detail=(
                    f"the incident records {recorded_count} entries ending in {str(head)[:12]}…, but "
                    + (f"its newest entry is #{newest_seq} ({newest_hash[:12]}…) of {found_count}"
                       if newest_seq is not None else "it has no entries")
                ),
            ))
        elif recorded_count != found_count and not (0 < recorded_count - found_count <= total_missing):
            problems.append(ChainProblem(
                seq=newest_seq, entry_id=None, incident_id=incident_id, problem=COUNT_MISMATCH,
                detail=f"the incident records {recorded_count} entries, the register holds {found_count}",
            ))
    return problems
