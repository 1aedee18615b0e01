"""The data that flows through every stage: signal → finding → assessment → incident.

These are plain pydantic models, shared by the core, the Prefect tasks and the CLI. They carry
no behaviour that needs Prefect or a database.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Rating(str, enum.Enum):
    """Impact or urgency on the rubric's three steps."""

    H = "H"
    M = "M"
    L = "L"

    @property
    def rank(self) -> int:
        return {"L": 0, "M": 1, "H": 2}[self.value]

    @classmethod
    def from_rank(cls, rank: int) -> "Rating":
        return [cls.L, cls.M, cls.H][max(0, min(2, rank))]

    def raised(self, steps: int = 1) -> "Rating":
        return Rating.from_rank(self.rank + steps)


class Priority(str, enum.Enum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"
    P5 = "P5"


class Level(int, enum.Enum):
    """Internal response level, in the 一级…四级 wording agencies use (1 is the most severe)."""

    ONE = 1
    TWO = 2
    THREE = 3
    FOUR = 4

    @property
    def zh(self) -> str:
        return {1: "一级", 2: "二级", 3: "三级", 4: "四级"}[self.value]

    @property
    def en(self) -> str:
        return f"Level {self.value}"

    def label(self, language: str = "zh-CN") -> str:
        return self.zh if language.startswith("zh") else self.en


class RegulatoryGrade(str, enum.Enum):
    """National cybersecurity incident grade, kept apart from the internal level."""

    GENERAL = "一般"
    LARGE = "较大"
    MAJOR = "重大"
    SPECIAL = "特别重大"

    @property
    def rank(self) -> int:
        return [g for g in RegulatoryGrade].index(self)

    @property
    def en(self) -> str:
        return {"一般": "general", "较大": "relatively major", "重大": "major",
                "特别重大": "especially major"}[self.value]


class IncidentStatus(str, enum.Enum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        return self in (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED, IncidentStatus.MITIGATED)


class Stage(str, enum.Enum):
    DETECT = "detect"
    CLASSIFY = "classify"
    NOTIFY = "notify"
    REMEDIATE = "remediate"
    RECORD = "record"


class StepKind(str, enum.Enum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"
    APPROVAL = "approval"


class ActionStatus(str, enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    OPEN = "open"  # a manual step nobody has ticked yet, or a step waiting for its approval
    REJECTED = "rejected"  # a person refused the approval (or nobody approved in time)


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"  # waits for the end of quiet hours (``due_at``)


class Signal(BaseModel):
    """Something was observed: an alert payload, a sweep finding, a manual form, a drill."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="Who observed it: alertmanager, manual, sweep, drill…")
    emergency_type: str = Field(description="Catalog id, e.g. ledger_loss")
    resource: str = Field(description="What is affected, e.g. ledger:C0001 or backups:nightly")
    labels: dict[str, str] = Field(default_factory=dict)
    observed_at: datetime = Field(default_factory=utcnow)
    dedup_key: str = ""
    drill: bool = False
    summary: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        if not self.dedup_key:
            self.dedup_key = f"{self.emergency_type}:{self.resource}"


class EvidenceItem(BaseModel):
    """One piece of evidence a detector read from real data."""

    kind: str = Field(description="file, checksum, row_count, trial_balance, http, log_line, command…")
    description: str
    data: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None
    observed_at: datetime = Field(default_factory=utcnow)


class Finding(BaseModel):
    """A detector's confirmation of a signal, with facts the severity rules read."""

    detector: str
    resource: str
    summary: str
    facts: dict[str, Any] = Field(default_factory=dict)
    evidence: list[EvidenceItem] = Field(default_factory=list)
    observed_at: datetime = Field(default_factory=utcnow)


class Detection(BaseModel):
    """What the detect stage concluded: the findings that fired and the merged facts."""

    resource: str
    findings: list[Finding] = Field(default_factory=list)
    facts: dict[str, Any] = Field(default_factory=dict)
    checked: list[str] = Field(default_factory=list, description="detectors that ran")
    clear_reasons: list[str] = Field(default_factory=list, description="why each quiet detector found nothing")

    @property
    def found(self) -> bool:
        return bool(self.findings)


class RuleLine(BaseModel):
    """One severity rule line that fired, kept as the rationale."""

    source: str = Field(description="rubric or the catalog file the rule came from")
    rule: str = Field(description="rule id")
    dimension: str = Field(description="impact, urgency, grade, level")
    value: str
    condition: str
    text: str = ""


class Obligation(BaseModel):
    """A legal or internal duty with an absolute deadline."""

    id: str
    law: str
    action: str
    to: str
    deadline: datetime
    immediate: bool = False
    note: str = ""
    amount_yuan: float | None = None  # e.g. the 滞纳金 accrued so far


class SlaTargets(BaseModel):
    ack_minutes: int
    resolve_hours: float
    rto_hours: float | None = None
    rpo_hours: float | None = None


class Assessment(BaseModel):
    """Impact × urgency → priority → level, the regulatory grade apart, and why."""

    impact: Rating
    urgency: Rating
    priority: Priority
    level: Level
    regulatory_grade: RegulatoryGrade = RegulatoryGrade.GENERAL
    vip_bump: bool = False
    fired: list[RuleLine] = Field(default_factory=list)
    obligations: list[Obligation] = Field(default_factory=list)
    sla: SlaTargets
    assessed_at: datetime = Field(default_factory=utcnow)

    @property
    def level_label(self) -> str:
        return self.level.zh


def idempotency_key(*, incident_id: str, stage: str, recipient: str, step: str) -> str:
    """One key per (incident, stage, recipient, step): a retry or re-run reuses it and sends nothing."""
    raw = "\x1f".join([incident_id, stage, recipient, step])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()
