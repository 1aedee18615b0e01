"""The readiness registers as typed models: one YAML file each under ``<agency>/readiness/``.

Every item says when it was last checked (or verified, or reviewed) and how often it must be;
the readiness check turns what is past due into gaps.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["CHECKIN_STATUSES", "Contact", "Raci", "Readiness", "ReadinessOutcome", "Regulation", "Resource", "Supply",
           "TrainingRecord"]

_ID = r"^[a-z0-9][a-z0-9_.-]*$"
_OWNER_HELP = "a person id or a role of contacts.yaml who answers for it; gaps of this item go to them"
CHECKIN_STATUSES = ("ok", "needs_support", "unavailable")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Supply(_Model):
    """Spare laptops, UKeys, UPS units, the offline filing kit."""

    id: str = Field(pattern=_ID)
    kind: Literal["laptop", "ukey", "ups", "offline_kit", "network", "other"]
    name: str = Field(min_length=1)
    location: str = ""
    quantity: int = Field(default=1, ge=0)
    minimum: int = Field(default=1, ge=0, description="fewer on hand than this is a gap")
    check_every_days: int = Field(default=90, gt=0)
    last_checked: date | None = None
    expires: date | None = Field(default=None, description="battery, certificate or warranty end")
    owner: str = Field(default="", description=_OWNER_HELP)


class Contact(_Model):
    person: str = ""
    phone: str = ""
    email: str = ""

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if not (self.phone or self.email):
            raise ValueError("a contact needs a phone or an email")
        return self


class Resource(_Model):
    """Vendors, IT support, lawyers, insurers: who the agency calls from outside."""

    id: str = Field(pattern=_ID)
    kind: Literal["vendor", "it_support", "lawyer", "insurer", "regulator", "other"]
    name: str = Field(min_length=1)
    contact: Contact
    verify_every_days: int = Field(default=180, gt=0)
    last_verified: date | None = None
    owner: str = Field(default="", description=_OWNER_HELP)


class Regulation(_Model):
    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1)
    issuer: str = ""
    effective: date | None = None
    review_every_days: int = Field(default=365, gt=0)
    last_reviewed: date | None = None
    owner: str = Field(default="", description=_OWNER_HELP)


class TrainingRecord(_Model):
    person: str = Field(min_length=1, description="a person id of contacts.yaml")
    on: date
    kind: Literal["drill", "tabletop", "training"]
    topic: str = ""


class Raci(_Model):
    """Departments per emergency type: exactly one accountable."""

    responsible: list[str] = Field(min_length=1)
    accountable: str = Field(min_length=1)
    consulted: list[str] = Field(default_factory=list)
    informed: list[str] = Field(default_factory=list)


class Readiness(_Model):
    supplies: list[Supply] = Field(default_factory=list)
    resources: list[Resource] = Field(default_factory=list)
    regulations: list[Regulation] = Field(default_factory=list)
    training: list[TrainingRecord] = Field(default_factory=list)
    raci: dict[str, Raci] = Field(default_factory=dict)

    @field_validator("supplies", "resources", "regulations")
    @classmethod
    def _unique_ids(cls, items: list) -> list:
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise ValueError(f"id {item.id!r} is listed twice")
            seen.add(item.id)
        return items


class ReadinessOutcome(BaseModel):
    """What one readiness check found and did: the gaps (each with its improvement item), the
    open readiness items no longer found, and where the report went."""

    as_of: date
    week: str = Field(description="ISO week of as_of, e.g. 2026-W49: one report per week and recipient")
    gaps: list[dict] = Field(default_factory=list)
    no_longer_found: list[dict] = Field(default_factory=list)
    report_path: str | None = None
    sent: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="recipients this week's report already reached")
    flow_run_id: str | None = None
