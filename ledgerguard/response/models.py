"""Typed run parameters and results of the response pipeline.

Prefect turns these pydantic models into the JSON schema the UI renders as a form and the
server enforces, so titles and descriptions here are what a duty lead reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ledgerguard.models import Signal, utcnow


class RunOptions(BaseModel):
    """How a run behaves, whatever started it."""

    remediate: bool = Field(True, title="Remediate", description="Run the runbook's automatic steps")
    drill: bool = Field(False, title="Drill", description="Mark every message 【演练】 and keep it out of real metrics")
    requested_by: str = Field("manual", title="Requested by", description="Person or system that started the run")
    source: str = Field("manual", title="Source", description="manual, alertmanager, sweep, drill…")
    dedup_key: str | None = Field(None, title="Dedup key", description="Join the open incident with this key; default <type>:<resource>")
    summary: str = Field("", title="What was observed", max_length=2000)


class ResponseRequest(RunOptions):
    """The shared `respond` pipeline's input: one emergency type on one resource."""

    emergency_type: str = Field(title="Emergency type", description="Catalog id, e.g. ledger_loss")
    resource: str = Field(title="Resource", description="What is affected, e.g. ledger:C0001")
    labels: dict[str, str] = Field(default_factory=dict, title="Labels")
    observed_at: datetime | None = Field(None, title="Observed at")
    detector_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, title="Detector parameters",
        description="Per-detector overrides of the catalog's params, e.g. {\"backup.age\": {\"rpo_hours\": 12}}")

    def to_signal(self) -> Signal:
        return Signal(
            source=self.source, emergency_type=self.emergency_type, resource=self.resource,
            labels=self.labels, observed_at=self.observed_at or utcnow(),
            dedup_key=self.dedup_key or "", drill=self.drill, summary=self.summary,
            payload={"requested_by": self.requested_by},
        )


class LedgerLossRequest(RunOptions):
    """账套误删/损坏: check one client's ledger against its last good backup."""

    client_id: str = Field(title="Client ID", description="Client whose ledger to check, e.g. C0001",
                           pattern=r"^[A-Za-z0-9_-]{1,32}$")

    def to_request(self) -> ResponseRequest:
        return ResponseRequest(emergency_type="ledger_loss", resource=f"ledger:{self.client_id}",
                               labels={"client_id": self.client_id},
                               **self.model_dump(exclude={"client_id"}))


class BackupFailureRequest(RunOptions):
    """备份失败/过期: check the agency's backup sets against the RPO."""

    backup_target: str = Field("nightly", title="Backup target", description="Which backup job to check",
                               pattern=r"^[A-Za-z0-9_-]{1,64}$")
    rpo_hours: float | None = Field(None, title="RPO (hours)", gt=0, le=24 * 31,
                                    description="Override the catalog's RPO for this run")

    def to_request(self) -> ResponseRequest:
        overrides = {"backup.age": {"rpo_hours": self.rpo_hours}} if self.rpo_hours else {}
        return ResponseRequest(emergency_type="backup_failure", resource=f"backups:{self.backup_target}",
                               labels={"backup_target": self.backup_target}, detector_params=overrides,
                               **self.model_dump(exclude={"backup_target", "rpo_hours"}))


class StepResult(BaseModel):
    step_id: str
    kind: str
    status: str
    summary: str


class ResponseOutcome(BaseModel):
    """What one run did, returned by every emergency flow and printed by the demo."""

    emergency_type: str
    resource: str
    incident_id: str | None = None
    incident_created: bool = False
    status: str = "no_incident"
    level: int | None = None
    level_label: str | None = None
    priority: str | None = None
    regulatory_grade: str | None = None
    rationale: list[str] = Field(default_factory=list)
    clear_reasons: list[str] = Field(default_factory=list)
    notified: list[str] = Field(default_factory=list)
    notifications_failed: list[str] = Field(default_factory=list)
    steps: list[StepResult] = Field(default_factory=list)
    obligations: list[str] = Field(default_factory=list)
    report_path: str | None = None
    postmortem_path: str | None = None
    flow_run_id: str | None = None


class Classified(BaseModel):
    """The classify stage's result: the incident it opened or joined and its assessment."""

    incident_id: str
    created: bool
    assessment: dict[str, Any]
    affected_clients: list[str] = Field(default_factory=list)

    @property
    def level(self) -> int:
        return int(self.assessment["level"])
