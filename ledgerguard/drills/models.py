"""Typed parameters and results of drills: Prefect renders the parameters as the run form."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

SNAKE = r"^[a-z][a-z0-9_]{0,63}$"


class DrillRequest(BaseModel):
    """演练: break a sandbox copy of the agency the scenario's way and run the real flow on it."""

    emergency_type: str = Field(title="Emergency type 紧急情况类型", description="catalog id, e.g. ledger_loss",
                                pattern=SNAKE)
    scenario: str | None = Field(None, title="Scenario 情景", pattern=SNAKE,
                                 description="a scenario of the type with a drill: block (default: the first)")
    stand_in: bool = Field(
        True, title="Stand-in responders 替身响应",
        description="for an unattended drill: a stand-in acknowledges and approves as the first person notified "
                    "would; off: the drill waits for real people to answer the real forms")
    requested_by: str = Field("drill", title="Requested by 发起人", max_length=100)


class TabletopRequest(BaseModel):
    """桌面推演: walk the type's runbook step by step; each answer is collected through a form."""

    emergency_type: str = Field(title="Emergency type 紧急情况类型", pattern=SNAKE)
    scenario: str | None = Field(None, title="Scenario 情景", pattern=SNAKE)
    facilitator: str = Field("drill", title="Facilitator 主持人", max_length=100)
    minutes_per_step: float = Field(30, gt=0, le=24 * 60, title="Minutes per step 每步限时（分钟）")


class DrillOutcome(BaseModel):
    drill_id: str
    emergency_type: str
    scenario: str
    mode: Literal["live", "tabletop"] = "live"
    incident_id: str | None = None
    level: int | None = None
    expected_level: int | None = None
    score: float | None = None
    pass_mark: float | None = None
    passed: bool | None = None
    measures: dict[str, dict[str, Any]] = Field(default_factory=dict)
    improvements: list[dict[str, Any]] = Field(default_factory=list)
    production_untouched: bool | None = None
    report_path: str | None = None
    started_at: datetime | None = None
    error: str | None = None
