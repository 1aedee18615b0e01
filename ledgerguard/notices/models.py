"""Notices to people outside the agency: the policy file (catalog/notices/notices.yaml), the states
of a draft, and the typed decision a person gives in the Prefect UI.

The register's table is :class:`ledgerguard.register.models.NoticeDraft` (revision 0007); these
models are the data around it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ledgerguard.catalog.models import LocalText
from ledgerguard.channels.contacts import Role

__all__ = [
    "ContentItem",
    "NeededNotice",
    "NoticeDecision",
    "NoticeKind",
    "NoticePolicy",
    "NoticeRefused",
    "NoticeStatus",
    "Delivery",
]

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class NoticeStatus(str, enum.Enum):
    DRAFTED = "drafted"
    APPROVED = "approved"
    REJECTED = "rejected"
    SENT = "sent"            # delivered by email, or filed by hand with a reference
    SUPERSEDED = "superseded"  # a newer version of the same notice replaced it before it went out


class Delivery(str, enum.Enum):
    EMAIL = "email"
    BY_HAND = "by_hand"


class NoticeRefused(ValueError):
    """A person's approval, rejection, sending or filing is refused; the message says why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContentItem(_Strict):
    """Something every draft of a kind must contain, in each language."""

    id: str
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)
    field: bool = Field(default=False, description="a label that must be followed by a value (label：value)")

    def label(self, language: str) -> str:
        return self.zh if language.lower().startswith("zh") else self.en


class NoticeKind(_Strict):
    name: LocalText
    template: str = Field(min_length=1, description="template base name under templates/<language>/")
    catalog_template: Literal["pipl57", "client"] | None = Field(
        default=None, description="the type's templates.<key> replaces the template (null there: none drafted)")
    per: Literal["incident", "client"] = "incident"
    audience: str | None = Field(default=None, description="the audience of a per-incident notice")
    raised_by: list[str] = Field(default_factory=list, description="obligation ids that call for this notice")
    from_routing: bool = Field(default=False, description="also when the type's routing notifies clients "
                                                          "at the incident's level")
    on_demand: bool = Field(default=False, description="a person may draft it for any incident")
    fulfils: list[str] = Field(default_factory=list, description="obligation ids met once it is sent or filed")
    delivery: Delivery
    to: LocalText
    approvers: list[str] = Field(min_length=1, description="roles of contacts.yaml whose people may approve")
    contents: list[ContentItem] = Field(min_length=1)

    @field_validator("approvers")
    @classmethod
    def _person_roles(cls, value: list[str]) -> list[str]:
        # Approvers are people of contacts.yaml: only the roles a person can hold make sense.
        known = [r.value for r in Role]
        unknown = [r for r in value if r not in known]
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; a person can hold: {', '.join(known)}")
        return value

    @field_validator("raised_by", "fulfils")
    @classmethod
    def _snake_ids(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _SNAKE.match(v)]
        if bad:
            raise ValueError(f"not an obligation id: {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="after")
    def _audience(self) -> "NoticeKind":
        if self.per == "incident" and not self.audience:
            raise ValueError("a per-incident notice needs an audience (e.g. cac, individuals)")
        if self.per == "client" and self.audience:
            raise ValueError("a per-client notice's audience is each client id; leave audience out")
        if self.per == "client" and self.delivery != Delivery.EMAIL:
            raise ValueError("per-client notices are delivered by email (the client's contact)")
        seen: set[str] = set()
        for item in self.contents:
            if item.id in seen:
                raise ValueError(f"contents: id {item.id!r} is used twice")
            seen.add(item.id)
        return self

    def approving_roles(self) -> set[str]:
        return set(self.approvers)


class NoticePolicy(_Strict):
    """catalog/notices/notices.yaml."""

    kinds: dict[str, NoticeKind] = Field(min_length=1)
    systems: dict[str, LocalText] = Field(default_factory=dict)
    categories: dict[str, LocalText] = Field(default_factory=dict)
    grades: dict[str, LocalText] = Field(default_factory=dict)
    pi_kinds: dict[str, LocalText] = Field(default_factory=dict)

    @field_validator("kinds")
    @classmethod
    def _kind_ids(cls, value: dict[str, NoticeKind]) -> dict[str, NoticeKind]:
        bad = [k for k in value if not _SNAKE.match(k)]
        if bad:
            raise ValueError(f"kind id(s) {', '.join(map(repr, bad))} must be snake_case")
        return value

    def kind(self, kind: str) -> NoticeKind:
        try:
            return self.kinds[kind]
        except KeyError:
            raise KeyError(f"unknown notice kind {kind!r}; kinds: {', '.join(self.kinds)}") from None

    def text(self, table: str, key: str | None, language: str, default: str = "") -> str:
        item = getattr(self, table).get(key or "")
        return item.get(language) if item is not None else default


@dataclass(frozen=True)
class NeededNotice:
    """One notice an incident needs: a kind, who within it, the template and why."""

    kind: str
    audience: str
    template: str
    because: str  # the obligation id or "routing" / "on_demand"


class NoticeDecision(BaseModel):
    """A person's decision on one notice draft, as the Prefect UI's form for `send-notice`."""

    model_config = ConfigDict(extra="forbid")

    notice_id: str = Field(title="通知编号 Notice", min_length=6, max_length=32, pattern=r"^[0-9a-f]+$",
                           description="The draft's id (or a unique prefix of at least 6 characters), "
                                       "from `ledgerguard notices list`")
    decision: Literal["approve", "reject"] = Field(
        title="决定 Decision", description="approve: approve this exact version and send it (or record it as "
                                           "to be filed by hand); reject: it goes nowhere")
    by: str = Field(title="审批人 Approver", min_length=1, max_length=100,
                    description="Your person id in contacts.yaml (a role that may approve this kind)")
    reason: str = Field(default="", title="理由 Reason", max_length=2000,
                        description="Required when rejecting")

    @model_validator(mode="after")
    def _reason_for_rejection(self) -> "NoticeDecision":
        if self.decision == "reject" and not self.reason.strip():
            raise ValueError("reason: say why the notice is rejected")
        return self
