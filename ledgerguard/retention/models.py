"""Schema of catalog/retention.yaml (保管期限) and the records of a retention decision.

``RetentionPolicy`` is loaded and validated with the rest of the catalog (``Catalog.retention``);
its cross-checks against the emergency types (every ``records:`` entry mapped to known kinds) are
in :meth:`RetentionPolicy.problems`, so `ledgerguard check` names the file and the field of each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ledgerguard.catalog.models import LocalText, SnakeId

__all__ = ["RecordKind", "DrillRetention", "RetentionPolicy", "RetentionStatus", "PurgeItem", "PurgePlan",
           "PurgeResult"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordKind(_Strict):
    """One kind of record and how long it is kept: ``years`` or ``permanent``, with its legal source."""

    name: LocalText
    years: int | None = Field(default=None, ge=1, le=100)
    permanent: bool = False
    source: str = Field(min_length=1, description="the law (article, table row) or 'agency policy (why)'")
    note: str = ""

    @model_validator(mode="after")
    def _one_period(self) -> "RecordKind":
        if self.permanent and self.years is not None:
            raise ValueError("give either years or permanent: true, not both")
        if not self.permanent and self.years is None:
            raise ValueError("a kind needs years (e.g. years: 30) or permanent: true")
        return self

    def period(self, language: str = "en") -> str:
        zh = language.lower().startswith("zh")
        if self.permanent:
            return "永久" if zh else "permanent"
        return f"{self.years} 年" if zh else f"{self.years} years"


class DrillRetention(_Strict):
    kinds: list[SnakeId] = Field(min_length=1)
    why: str = Field(min_length=1)


class RetentionPolicy(_Strict):
    """retention.yaml: the record kinds with their periods, which kinds each catalog record is, the
    kinds every incident holds, the drills' own policy and the (permanent) kind of purge records."""

    source: str = Field(min_length=1)
    counted_from: Literal["accounting_year_end", "closed"] = Field(
        default="accounting_year_end",
        description="accounting_year_end: from 1 January after the year the incident closed (会计档案管理办法 "
                    "Art. 15); closed: from the day it closed")
    kinds: dict[SnakeId, RecordKind] = Field(min_length=1)
    records: dict[SnakeId, list[SnakeId]] = Field(
        description="each `records:` entry of the catalog's types → the kinds it is")
    every_incident: list[SnakeId] = Field(default_factory=list)
    drills: DrillRetention
    purge_records: SnakeId

    def problems(self, type_records: dict[str, list[str]]) -> list[tuple[str, str]]:
        """(field, reason) for every reference that does not resolve, given each emergency type's
        ``records:`` list: unknown kinds, a non-permanent purge-record kind, and every type record
        that is not mapped (the type would then have no retention mapping for it)."""
        found: list[tuple[str, str]] = []
        known = ", ".join(sorted(self.kinds))

        def check_kind(where: str, kind: str) -> None:
            if kind not in self.kinds:
                found.append((where, f"unknown kind {kind!r}; kinds: {known}"))

        for record, kinds in self.records.items():
            if not kinds:
                found.append((f"records.{record}", "maps to no kind; give at least one"))
            for i, kind in enumerate(kinds):
                check_kind(f"records.{record}.{i}", kind)
        for i, kind in enumerate(self.every_incident):
            check_kind(f"every_incident.{i}", kind)
        for i, kind in enumerate(self.drills.kinds):
            check_kind(f"drills.kinds.{i}", kind)
        check_kind("purge_records", self.purge_records)
        if self.purge_records in self.kinds and not self.kinds[self.purge_records].permanent:
            found.append(("purge_records", f"{self.purge_records!r} must be a permanent kind: the register "
                                           "always keeps what it purged, and why"))
        for type_id, records in sorted(type_records.items()):
            unmapped = [r for r in records if r not in self.records]
            for record in unmapped:
                found.append(("records", f"emergency type {type_id} ({type_id}.yaml) has no retention mapping for "
                                         f"its record {record!r}: map it to kinds under records:"))
        return found

    def kinds_for(self, records: list[str], *, drill: bool) -> list[str]:
        """The kinds an incident holds: a drill's only the drills' kinds; otherwise every_incident
        plus the kinds its type's records map to (unmapped records raise KeyError)."""
        if drill:
            return list(dict.fromkeys(self.drills.kinds))
        kinds: list[str] = []
        for record in records:
            if record not in self.records:
                raise KeyError(f"record {record!r} has no retention mapping in retention.yaml")
            kinds += self.records[record]
        # the type's own kinds first: on a tie the statutory kind names the period, not the baseline
        return list(dict.fromkeys(kinds + list(self.every_incident)))

    def longest(self, kinds: list[str]) -> str:
        """The kind with the longest period among ``kinds`` (permanent beats any number of years)."""
        return max(kinds, key=lambda k: (self.kinds[k].permanent, self.kinds[k].years or 0))


# --- decisions ---------------------------------------------------------------------------------


class RetentionStatus(BaseModel):
    """How long one incident's record is kept, and whether it may be purged as of ``as_of``."""

    incident_id: str
    emergency_type: str
    title: str = ""
    status: str
    drill: bool = False
    opened_at: datetime | None = None
    ended_at: datetime | None = Field(default=None, description="when it was closed (or resolved)")
    kinds: list[str] = Field(default_factory=list)
    governing_kind: str | None = Field(default=None, description="the kind with the longest period")
    years: int | None = None
    permanent: bool = False
    retain_until: datetime | None = Field(default=None, description="None: open, permanent or unmapped")
    as_of: datetime
    purgeable: bool
    reason: str = Field(description="why it may go, or why it must stay")


class PurgeItem(RetentionStatus):
    """One incident of a purge plan: ``purgeable`` False with the refusal's ``reason``."""

    archive_problems: list[str] = Field(default_factory=list)


class PurgePlan(BaseModel):
    as_of: datetime
    archive: str | None = None
    items: list[PurgeItem] = Field(default_factory=list)

    @property
    def to_purge(self) -> list[PurgeItem]:
        return [i for i in self.items if i.purgeable]

    @property
    def refused(self) -> list[PurgeItem]:
        return [i for i in self.items if not i.purgeable]


class PurgeResult(BaseModel):
    """What ``purge`` did: the purge records written and what it refused (with the reasons)."""

    plan: PurgePlan
    purges: list[dict[str, Any]] = Field(default_factory=list,
                                         description="per purged incident: purge id, counts, retain_until")

    @property
    def refused(self) -> list[PurgeItem]:
        return self.plan.refused
