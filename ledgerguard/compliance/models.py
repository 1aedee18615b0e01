"""Prefect's run history as plain data (read by `tasks.history`, used by post-mortems, the
monthly report and the consistency check)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

EMERGENCY_TAG = "emergency:"
INCIDENT_TAG = "incident:"
# Prefect state types that mean the run ended without doing its work.
BAD_STATES = ("FAILED", "CRASHED", "CANCELLED")
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


class TaskRunRecord(BaseModel):
    id: str
    name: str
    task_key: str = ""
    state_type: str | None = None
    state_name: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    run_seconds: float = 0.0
    run_count: int = 0


class LogLine(BaseModel):
    at: datetime
    level: int
    name: str = ""
    message: str
    task_run_id: str | None = None


class ArtifactRecord(BaseModel):
    key: str | None = None
    type: str | None = None
    description: str | None = None
    created: datetime | None = None
    task_run_id: str | None = None


class FlowRunRecord(BaseModel):
    """One flow run as Prefect's API reports it."""

    id: str
    name: str
    flow_name: str = ""
    deployment_id: str | None = None
    parent_task_run_id: str | None = None
    parent_flow_run_id: str | None = None
    """The flow run this one ran inside (a subflow's parent: a sweep, a drill)."""
    state_type: str | None = None
    state_name: str | None = None
    state_message: str | None = None
    created: datetime | None = None
    expected_start_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    run_seconds: float = 0.0
    tags: list[str] = Field(default_factory=list)
    task_runs: list[TaskRunRecord] = Field(default_factory=list)
    logs: list[LogLine] = Field(default_factory=list)
    artifacts: list[ArtifactRecord] = Field(default_factory=list)

    @property
    def emergency_type(self) -> str | None:
        return next((t[len(EMERGENCY_TAG):] for t in self.tags if t.startswith(EMERGENCY_TAG)), None)

    @property
    def incident_ids(self) -> list[str]:
        return [t[len(INCIDENT_TAG):] for t in self.tags if t.startswith(INCIDENT_TAG)]

    @property
    def drill(self) -> bool:
        return "drill" in self.tags

    @property
    def ended_badly(self) -> bool:
        return self.state_type in BAD_STATES

    def flat(self) -> dict[str, Any]:
        """One row for a DataFrame (no nested task runs, logs or artifacts)."""
        return {"flow_run_id": self.id, "name": self.name, "flow_name": self.flow_name,
                "state_type": self.state_type, "state_name": self.state_name,
                "start_time": self.start_time, "end_time": self.end_time, "run_seconds": self.run_seconds,
                "emergency_type": self.emergency_type, "drill": self.drill,
                "incident_ids": ",".join(self.incident_ids), "subflow": self.parent_task_run_id is not None,
                "task_runs": len(self.task_runs)}


class RunHistory(BaseModel):
    """What Prefect still knows about a set of flow runs, and which asked-for runs it no longer has."""

    runs: list[FlowRunRecord] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    """Run ids the register names that Prefect's API no longer has (deleted or vacuumed)."""
    read_at: datetime
    api_url: str | None = None
