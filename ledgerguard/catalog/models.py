"""Schema of the catalog (紧急情况清单): one ``CatalogEntry`` per emergency type, and the ``Rubric``.

Every model forbids unknown fields, so a typo in a YAML file is an error, not a silent default.
Conditions (``when``) are compiled when a model is built, so a bad expression is an error too.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from ledgerguard.expressions import Condition, ExpressionError, compile_condition
from ledgerguard.models import Priority, Rating, RegulatoryGrade, StepKind

__all__ = [
    "ROLES",
    "CATEGORIES",
    "LEVELS",
    "KNOWN_TEMPLATES",
    "DERIVED_FACTS",
    "Severity",
    "LocalText",
    "Rule",
    "GradeRule",
    "Deadline",
    "ObligationSpec",
    "DetectorRef",
    "Routing",
    "LevelSla",
    "EntrySla",
    "EscalationStep",
    "RunbookStep",
    "Templates",
    "Scenario",
    "DrillSetup",
    "DrillInjection",
    "DrillPolicy",
    "DRILL_MEASURES",
    "CatalogEntry",
    "VipRule",
    "Rubric",
]

ROLES: tuple[str, ...] = (
    "owner",
    "manager",
    "duty_lead",
    "it",
    "accountants",
    "client_accountant",
    "hr",
    "legal",
    "data_protection",
    "reviewer",
    "vendor",
    "all_staff",
)
CATEGORIES = ("availability", "data", "security", "compliance", "facility", "client_service")
LEVELS = (1, 2, 3, 4)
KNOWN_TEMPLATES = ("notify_staff", "notify_client", "report", "postmortem", "notice_pipl57")
# Facts the classifier adds before evaluating conditions (documented under facts: in rubric.yaml).
DERIVED_FACTS = (
    "rpo_hours",
    "rto_hours",
    "deadline_at",
    "hours_to_deadline",
    "working_days_to_deadline",
    "regulatory_grade",
    "grade_rank",
    "level",
)

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
_KEBAB = re.compile(r"^[a-z][a-z0-9-]*$")
_DOTTED = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def _snake(value: str) -> str:
    if not _SNAKE.match(value):
        raise ValueError(f"{value!r} must be snake_case (a-z, 0-9, _), starting with a letter")
    return value


def _dotted(value: str) -> str:
    if not _DOTTED.match(value):
        raise ValueError(f"{value!r} must look like <area>.<name>, e.g. ledger.freeze")
    return value


def _role(value: str) -> str:
    if value not in ROLES:
        raise ValueError(f"unknown role {value!r}; roles are: {', '.join(ROLES)}")
    return value


def _condition(value: str) -> str:
    try:
        compile_condition(value)
    except ExpressionError as exc:
        raise ValueError(f"bad condition: {exc.reason}") from exc
    return value


SnakeId = Annotated[str, AfterValidator(_snake)]
DottedId = Annotated[str, AfterValidator(_dotted)]
Role = Annotated[str, AfterValidator(_role)]
ConditionText = Annotated[str, AfterValidator(_condition)]
LevelInt = Annotated[int, Field(ge=1, le=4)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalText(_Strict):
    """A user-facing text in Chinese and English."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, language: str = "zh-CN") -> str:
        return self.zh if language.lower().startswith("zh") else self.en


class _HasCondition(_Strict):
    when: ConditionText
    _compiled: Condition | None = PrivateAttr(default=None)

    @property
    def condition(self) -> Condition:
        if self._compiled is None:
            self._compiled = compile_condition(self.when)
        return self._compiled


class Rule(_HasCondition):
    """One severity rule line: when ``when`` holds, impact and/or urgency are at least this."""

    id: SnakeId
    impact: Rating | None = None
    urgency: Rating | None = None
    text: LocalText

    @model_validator(mode="after")
    def _sets_something(self) -> "Rule":
        if self.impact is None and self.urgency is None:
            raise ValueError("a rule must set impact or urgency (or both)")
        return self


class GradeRule(_HasCondition):
    """A regulatory-grade rule: when ``when`` holds, the grade is at least ``grade``."""

    id: SnakeId
    grade: RegulatoryGrade
    text: LocalText


class Deadline(_Strict):
    """When an obligation is due: ``base`` plus ``hours``; hours 0 means 立即 (immediately).

    base: ``detected`` (detection time), ``next_filing_deadline`` (next monthly filing
    deadline), ``deadline`` (the deadline that matters for this type, see CatalogEntry.deadline),
    or ``fact:<name>`` (a datetime fact, e.g. ``fact:handling_ended_at``; when the fact is absent
    the deadline is counted from detection and the obligation says so).
    """

    base: str = "detected"
    hours: float = Field(default=0, ge=0)

    @field_validator("base")
    @classmethod
    def _base(cls, value: str) -> str:
        if value in ("detected", "next_filing_deadline", "deadline"):
            return value
        if value.startswith("fact:") and _SNAKE.match(value[5:]):
            return value
        raise ValueError(
            f"{value!r} is not a deadline base; use detected, next_filing_deadline, deadline or fact:<name>"
        )

    @property
    def immediate(self) -> bool:
        return self.hours == 0 and self.base == "detected"


class ObligationSpec(_HasCondition):
    """A legal duty that applies when ``when`` holds."""

    id: SnakeId
    law: str = Field(min_length=1)
    action: LocalText
    to: LocalText
    deadline: Deadline = Field(default_factory=Deadline)
    note: LocalText | None = None
    amount: ConditionText | None = Field(
        default=None, description="expression over the facts: the amount in yuan so far (e.g. the "
                                  "滞纳金 accrued, late_fee_so_far_yuan); kept with the obligation")
    _amount: Condition | None = PrivateAttr(default=None)

    @property
    def amount_expression(self) -> Condition | None:
        if self.amount and self._amount is None:
            self._amount = compile_condition(self.amount)
        return self._amount


class DetectorRef(_Strict):
    id: DottedId
    params: dict[str, Any] = Field(default_factory=dict)


class Routing(_Strict):
    """Roles to notify per level (1 … 4), and from which level clients are notified (after approval)."""

    levels: dict[LevelInt, list[Role]]
    notify_clients_from_level: LevelInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_levels(cls, data: Any) -> Any:
        # YAML writes levels as top-level int keys next to notify_clients_from_level.
        if isinstance(data, dict) and "levels" not in data:
            levels = {k: v for k, v in data.items() if not isinstance(k, str) or k.isdigit()}
            rest = {k: v for k, v in data.items() if k not in levels}
            return {"levels": levels, **rest}
        return data

    @field_validator("levels")
    @classmethod
    def _all_levels(cls, value: dict[int, list[str]]) -> dict[int, list[str]]:
        missing = [lvl for lvl in LEVELS if lvl not in value]
        if missing:
            raise ValueError(f"roles are missing for level(s) {', '.join(map(str, missing))}; give all of 1..4")
        for lvl, roles in value.items():
            if not roles:
                raise ValueError(f"level {lvl} notifies nobody")
        return dict(sorted(value.items()))

    def roles_for(self, level: int) -> list[str]:
        return list(self.levels[int(level)])

    def notify_clients(self, level: int) -> bool:
        return self.notify_clients_from_level is not None and int(level) <= self.notify_clients_from_level


class LevelSla(_Strict):
    ack_minutes: int | None = Field(default=None, gt=0)
    resolve_hours: float | None = Field(default=None, gt=0)


class EntrySla(_Strict):
    rto_hours: float | None = Field(default=None, gt=0)
    rpo_hours: float | None = Field(default=None, gt=0)
    levels: dict[LevelInt, LevelSla] = Field(
        default_factory=dict, description="overrides of the rubric's ack/resolve targets per level"
    )


class EscalationStep(_Strict):
    """One step of an escalation chain: notify these roles, then wait for an acknowledgement.

    ``notify: routing`` means the level's roles under the type's ``routing``; the first step of
    every chain is sent by the notify stage itself. ``wait_minutes`` defaults to the level's ack
    SLA. The step is sent ``repeat`` times (each followed by its wait) before the next step.
    """

    notify: Literal["routing"] | list[Role] = "routing"
    wait_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    repeat: int = Field(default=1, ge=1, le=10)

    @field_validator("notify")
    @classmethod
    def _someone(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("an escalation step must notify at least one role (or `routing`)")
        return value


EscalationChains = dict[LevelInt, Annotated[list[EscalationStep], Field(min_length=1)]]


class RunbookStep(_Strict):
    id: SnakeId
    title: LocalText
    kind: StepKind
    action: DottedId | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    retries: int = Field(default=0, ge=0, le=10)
    timeout_minutes: float = Field(default=10, gt=0)
    destructive: bool = Field(default=False, description="a person other than the requester approves it first")
    on_failure: Literal["stop", "continue"] = "stop"
    instructions: LocalText | None = None
    approvers: list[Role] = Field(
        default_factory=lambda: ["manager", "duty_lead", "owner"],
        description="roles whose people may approve (destructive and approval steps)")
    approval_minutes: float = Field(
        default=60, gt=0, le=7 * 24 * 60,
        description="how long the run waits for the approval; then the duty lead is paged and on_reject applies")
    on_reject: Literal["stop", "continue"] = Field(
        default="stop", description="after a rejection or an approval time-out: stop the runbook or go on")

    @property
    def needs_approval(self) -> bool:
        return self.destructive or self.kind == StepKind.APPROVAL

    @model_validator(mode="after")
    def _action_matches_kind(self) -> "RunbookStep":
        if self.kind == StepKind.AUTOMATIC and not self.action:
            raise ValueError("an automatic step needs an action (e.g. ledger.freeze)")
        if self.kind == StepKind.MANUAL and self.action:
            raise ValueError("a manual step is done by a person and must not name an action")
        if self.kind == StepKind.MANUAL and self.retries:
            raise ValueError("a manual step cannot be retried automatically")
        return self


class Templates(_Strict):
    """Template base names under templates/<lang>/ (the extension is the renderer's business)."""

    staff: str = "notify_staff"
    client: str | None = "notify_client"
    report: str = "report"
    postmortem: str = "postmortem"
    pipl57: str | None = None

    def names(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class DrillInjection(_Strict):
    injector: str = Field(description="id of one of the type's own injectors, e.g. ledger.delete_vouchers")
    params: dict[str, Any] = Field(default_factory=dict, description="the injector's keyword arguments "
                                                                     "(strings may use the resource's placeholders)")
    resource: str | None = Field(default=None, description="default: the drill's resource")


class DrillSetup(_Strict):
    """How a drill plays a scenario for real: the injections that break a sandbox copy of the
    agency's data, and what the response is expected to produce from it."""

    resource: str = Field(description="what the flow checks; placeholders {client} (a non-VIP client of the "
                                      "sandbox), {period} (last month), {period_before}, {year}, {annual_year}, {today}: e.g. ledger:{client}")
    inject: list[DrillInjection] = Field(min_length=1)
    expected_level: LevelInt | None = Field(default=None, description="default: the scenario's expected_level")
    expected_obligations: list[SnakeId] = Field(
        default_factory=list, description="obligation ids the incident must carry (catalog or rubric)")
    time_limit_minutes: int = Field(default=30, gt=0, le=24 * 60,
                                    description="the drill stops waiting for people after this long")
    days_before_deadline: float | None = Field(
        default=None, ge=0, le=366,
        description="play the scenario as of this many days before the type's next deadline (the data is "
                    "judged as of then): for faults that only matter near a deadline")


class Scenario(_Strict):
    """A worked case for drills and acceptance tests: facts in, expected level out."""

    id: SnakeId
    description: LocalText
    facts: dict[str, Any] = Field(default_factory=dict)
    detected_at: datetime | None = None
    expected_level: LevelInt
    expected_grade: RegulatoryGrade | None = None
    expected_rules: list[str] = Field(default_factory=list, description="rule ids expected to fire")
    drill: DrillSetup | None = Field(default=None, description="how a drill plays this scenario on a sandbox")

    @field_validator("detected_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("detected_at needs a timezone, e.g. 2026-10-26T16:40:00+08:00")
        return value


class Severity(_Strict):
    rules: list[Rule] = Field(default_factory=list)


class CatalogEntry(_Strict):
    """One emergency type: how it is detected, rated, routed, handled and recorded."""

    id: SnakeId
    flow: str
    name: LocalText
    category: Literal["availability", "data", "security", "compliance", "facility", "client_service"]
    description: LocalText
    deadline: str = Field(
        default="monthly",
        description=(
            "which statutory deadline makes this type urgent: monthly (next filing deadline), "
            "month_end (the month-end close), annual:<name> (from filing-calendar.yaml), or none"
        ),
    )
    facts: dict[str, str] = Field(
        default_factory=dict, description="type-specific facts this entry's conditions read, with a description"
    )
    detectors: list[DetectorRef] = Field(min_length=1)
    severity: Severity
    routing: Routing
    sla: EntrySla = Field(default_factory=EntrySla)
    runbook: list[RunbookStep] = Field(min_length=1)
    escalation: EscalationChains = Field(
        default_factory=dict, description="per level, a chain that replaces the rubric's for this type")
    obligations: list[ObligationSpec] = Field(default_factory=list)
    templates: Templates = Field(default_factory=Templates)
    records: list[SnakeId] = Field(min_length=1)
    scenarios: list[Scenario] = Field(min_length=1)

    @field_validator("flow")
    @classmethod
    def _kebab(cls, value: str) -> str:
        if not _KEBAB.match(value):
            raise ValueError(f"{value!r} must be kebab-case, e.g. ledger-loss")
        return value

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: str) -> str:
        if value in ("monthly", "month_end", "none") or (value.startswith("annual:") and _SNAKE.match(value[7:])):
            return value
        raise ValueError(f"{value!r}: use monthly, month_end, annual:<name> or none")

    @model_validator(mode="after")
    def _consistent(self) -> "CatalogEntry":
        expected_flow = self.id.replace("_", "-")
        if self.flow != expected_flow:
            raise ValueError(f"flow {self.flow!r} must be the kebab-case of id: {expected_flow!r}")
        for label, items in (
            ("severity.rules", self.severity.rules),
            ("runbook", self.runbook),
            ("obligations", self.obligations),
            ("scenarios", self.scenarios),
        ):
            seen: set[str] = set()
            for item in items:
                if item.id in seen:
                    raise ValueError(f"{label}: id {item.id!r} is used twice")
                seen.add(item.id)
        if not any(s.drill for s in self.scenarios):
            raise ValueError("scenarios: at least one scenario needs a drill: block (resource, inject) "
                             "so the type can be drilled")
        return self

    def scenario(self, scenario_id: str | None = None) -> Scenario:
        """The named scenario, or the first one a drill can play."""
        for scenario in self.scenarios:
            if scenario.id == scenario_id or (scenario_id is None and scenario.drill):
                return scenario
        known = ", ".join(s.id for s in self.scenarios)
        raise KeyError(f"{self.id}: no scenario {scenario_id!r}; scenarios: {known}")

    # convenience for the stages
    def roles_for(self, level: int) -> list[str]:
        return self.routing.roles_for(level)

    def step(self, step_id: str) -> RunbookStep:
        for step in self.runbook:
            if step.id == step_id:
                return step
        raise KeyError(f"{self.id}: no runbook step {step_id!r}; steps: {', '.join(s.id for s in self.runbook)}")


class DrillPolicy(_Strict):
    """drills.yaml: how drills are scored, which follow-ups they open, and their schedules."""

    weights: dict[SnakeId, float] = Field(description="measure → weight; a measure that does not apply to a "
                                                      "drill (no RPO, no notice) is left out and the rest rescaled")
    pass_mark: float = Field(ge=0, le=100)
    improvement_due_days: int = Field(default=14, gt=0, le=365)
    improvement_owner_roles: list[SnakeId] = Field(
        min_length=1, description="the first role someone holds owns a drill's improvement items")
    monthly: str = Field(description="cron (agency time zone) of the monthly single-type drill")
    yearly: str = Field(description="cron (agency time zone) of the yearly full drill")
    rotation: list[SnakeId] = Field(default_factory=list, description="order of the monthly drill; "
                                                                       "default: the catalog's, by id")
    notice_contents: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict, description="notice template → language → text each drafted notice must contain")

    @field_validator("weights")
    @classmethod
    def _known_measures(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(DRILL_MEASURES))
        if unknown:
            raise ValueError(f"unknown measure(s) {', '.join(unknown)}; measures: {', '.join(DRILL_MEASURES)}")
        if any(w < 0 for w in value.values()) or not any(w > 0 for w in value.values()):
            raise ValueError("weights must be ≥ 0 and at least one > 0")
        return value


DRILL_MEASURES = ("detected", "level_matched", "notified", "acknowledged", "recovered", "rto_met", "rpo_met",
                  "obligations_complete", "notices_complete", "checklist_completion")
"""What a drill measures, each scored 0…1 (or not applicable)."""


class VipRule(_HasCondition):
    """A VIP client raises impact by ``steps`` when ``when`` holds."""

    when: ConditionText = "vip"
    steps: int = Field(default=1, ge=1, le=2)
    text: LocalText


class Rubric(_Strict):
    """The generic severity rubric (rubric.yaml) that every type shares."""

    roles: dict[str, LocalText]
    facts: dict[str, str] = Field(description="generic fact vocabulary that conditions may read")
    rules: list[Rule]
    vip: VipRule
    matrix: dict[Rating, dict[Rating, Priority]]
    levels: dict[Priority, LevelInt]
    grade_rules: list[GradeRule] = Field(default_factory=list)
    obligations: list[ObligationSpec] = Field(default_factory=list)
    sla: dict[LevelInt, LevelSla]
    escalation: EscalationChains = Field(description="per level, the escalation chain (frozen into each incident)")

    @field_validator("escalation")
    @classmethod
    def _every_level_escalates(cls, value: dict[int, list[EscalationStep]]) -> dict[int, list[EscalationStep]]:
        missing = [lvl for lvl in LEVELS if lvl not in value]
        if missing:
            raise ValueError(f"escalation: no chain for level(s) {', '.join(map(str, missing))}; give all of 1..4")
        return dict(sorted(value.items()))

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: dict[str, LocalText]) -> dict[str, LocalText]:
        if set(value) != set(ROLES):
            missing = sorted(set(ROLES) - set(value))
            extra = sorted(set(value) - set(ROLES))
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if extra:
                parts.append(f"unknown {', '.join(extra)} (the code knows: {', '.join(ROLES)})")
            raise ValueError("roles must document exactly the role vocabulary: " + "; ".join(parts))
        return value

    @field_validator("matrix")
    @classmethod
    def _full_matrix(cls, value: dict[Rating, dict[Rating, Priority]]) -> dict[Rating, dict[Rating, Priority]]:
        for impact in Rating:
            row = value.get(impact)
            if row is None or set(row) != set(Rating):
                raise ValueError(f"matrix row {impact.value} must give a priority for urgency H, M and L")
        return value

    @field_validator("levels")
    @classmethod
    def _all_priorities(cls, value: dict[Priority, int]) -> dict[Priority, int]:
        missing = [p.value for p in Priority if p not in value]
        if missing:
            raise ValueError(f"levels: no level for {', '.join(missing)}")
        return value

    @field_validator("sla")
    @classmethod
    def _sla_complete(cls, value: dict[int, LevelSla]) -> dict[int, LevelSla]:
        for lvl in LEVELS:
            item = value.get(lvl)
            if item is None or item.ack_minutes is None or item.resolve_hours is None:
                raise ValueError(f"sla: level {lvl} needs ack_minutes and resolve_hours")
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> "Rubric":
        for label, items in (("rules", self.rules), ("grade_rules", self.grade_rules), ("obligations", self.obligations)):
            seen: set[str] = set()
            for item in items:
                if item.id in seen:
                    raise ValueError(f"{label}: id {item.id!r} is used twice")
                seen.add(item.id)
        return self

    def priority(self, impact: Rating, urgency: Rating) -> Priority:
        return self.matrix[impact][urgency]

    def level(self, priority: Priority) -> int:
        return self.levels[priority]
