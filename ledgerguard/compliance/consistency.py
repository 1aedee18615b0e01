"""The consistency check: the register and Prefect's run history must tell the same story.

Every incident has the flow runs that handled it, and Prefect still has each of them; every
emergency flow run that ended has its entries in the register (an incident it handled, the
signal it recorded, a timeline entry or the drill it played). A run that failed or crashed before
recording anything is exactly what an auditor must not find hidden, so it is reported by name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledgerguard.compliance.models import FINAL_STATES, FlowRunRecord, RunHistory
from ledgerguard.register.models import (
    DrillRecord,
    Incident,
    IncidentFlowRun,
    SignalRecord,
    TimelineEntry,
    as_utc,
    utcnow,
)

ProblemKind = Literal[
    "incident_without_runs",       # an incident no flow run is linked to
    "run_missing_in_prefect",      # the register names a run Prefect no longer has (deleted, vacuumed)
    "run_without_record",          # an emergency run ended and the register has nothing from it
    "failed_run_without_record",   # … and it ended failed, crashed or cancelled
    "run_ended_badly",             # a run the register knows of ended failed or crashed
]
SEVERITY = {"incident_without_runs": "error", "run_missing_in_prefect": "error", "run_without_record": "error",
            "failed_run_without_record": "error", "run_ended_badly": "warning"}


class ConsistencyProblem(BaseModel):
    kind: ProblemKind
    severity: str = "error"
    incident_id: str | None = None
    flow_run_id: str | None = None
    flow_name: str | None = None
    state: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        where = " ".join(p for p in (
            f"incident {self.incident_id}" if self.incident_id else "",
            f"run {self.flow_run_id}" + (f" ({self.flow_name})" if self.flow_name else "") if self.flow_run_id else "",
        ) if p)
        return f"{self.kind}: {where}" + (f" — {self.detail}" if self.detail else "")


class ConsistencyReport(BaseModel):
    start: datetime
    end: datetime
    checked_at: datetime
    checked_incidents: int = 0
    checked_runs: int = 0
    runs_in_progress: int = 0
    problems: list[ConsistencyProblem] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + 1
        return out


def linked_run_ids(*, db_session: Session, incident_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """incident id → [(flow run id, flow name)] as the register links them."""
    out: dict[str, list[tuple[str, str]]] = {i: [] for i in incident_ids}
    if not incident_ids:
        return out
    rows = db_session.execute(select(IncidentFlowRun.incident_id, IncidentFlowRun.flow_run_id, IncidentFlowRun.flow_name)
                              .where(IncidentFlowRun.incident_id.in_(incident_ids)))
    for incident_id, run_id, flow_name in rows:
        out[incident_id].append((run_id, flow_name or ""))
    return out


def recorded_run_ids(*, db_session: Session, run_ids: list[str]) -> set[str]:
    """Which of these runs left something in the register."""
    found: set[str] = set()
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start:start + 500]
        for column in (IncidentFlowRun.flow_run_id, SignalRecord.flow_run_id, TimelineEntry.flow_run_id,
                       DrillRecord.flow_run_id):
            found |= set(db_session.scalars(select(column).where(column.in_(chunk)).distinct()))
    return found


def incidents_in(*, db_session: Session, start: datetime, end: datetime) -> list[Incident]:
    return list(db_session.scalars(select(Incident).where(Incident.opened_at >= as_utc(start),
                                                          Incident.opened_at < as_utc(end))
                                   .order_by(Incident.opened_at)))


def check_consistency(*, db_session: Session, history: RunHistory, start: datetime, end: datetime,
                      read_linked: Callable[[list[str]], RunHistory] | None = None, now: datetime | None = None,
                      grace: timedelta = timedelta(minutes=30)) -> ConsistencyReport:
    """Compare the incidents opened in [start, end) and the emergency runs of ``history`` (the
    range's runs) with each other. ``read_linked(run_ids)`` asks Prefect about the runs the
    register links to those incidents (``tasks.history.read_runs``); the ``missing`` ids of its
    answer are runs Prefect no longer has. An incident younger than ``grace`` may not have its run linked yet."""
    now = now or utcnow()
    report = ConsistencyReport(start=start, end=end, checked_at=now)
    incidents = incidents_in(db_session=db_session, start=start, end=end)
    links = linked_run_ids(db_session=db_session, incident_ids=[i.id for i in incidents])
    report.checked_incidents = len(incidents)
    linked_history = read_linked([run_id for runs in links.values() for run_id, _ in runs]) if read_linked else None
    missing = set(linked_history.missing) if linked_history else set()
    known: dict[str, FlowRunRecord] = {r.id: r for r in history.runs}
    if linked_history:
        known.update({r.id: r for r in linked_history.runs})

    for incident in incidents:
        runs = links[incident.id]
        if not runs and as_utc(incident.opened_at) < now - grace:
            report.problems.append(ConsistencyProblem(
                kind="incident_without_runs", incident_id=incident.id,
                detail=f"{incident.emergency_type} {incident.resource}: no flow run is linked to it"))
        for run_id, flow_name in runs:
            if run_id in missing:
                report.problems.append(ConsistencyProblem(
                    kind="run_missing_in_prefect", incident_id=incident.id, flow_run_id=run_id, flow_name=flow_name,
                    detail="the register links this run but Prefect's API no longer has it (deleted or vacuumed)"))
                continue
            run = known.get(run_id)
            if run is not None and run.state_type in ("FAILED", "CRASHED"):
                report.problems.append(ConsistencyProblem(
                    kind="run_ended_badly", incident_id=incident.id, flow_run_id=run_id,
                    flow_name=run.flow_name or flow_name, state=run.state_name,
                    detail=run.state_message or ""))

    emergency_runs = [r for r in history.runs if r.emergency_type]
    report.checked_runs = len(emergency_runs)
    finished = [r for r in emergency_runs if r.state_type in FINAL_STATES]
    report.runs_in_progress = len(emergency_runs) - len(finished)
    recorded = recorded_run_ids(db_session=db_session, run_ids=[r.id for r in history.runs])
    # A sweep or drill that ran the emergency flow as a subflow carries its tags; the record is
    # its child's. A run counts as recorded when it or a run inside it left a record.
    for run in sorted(history.runs, key=lambda r: r.start_time or r.expected_start_time or now, reverse=True):
        if run.id in recorded and run.parent_flow_run_id:
            recorded.add(run.parent_flow_run_id)
    for run in finished:
        if run.id in recorded:
            continue
        kind = "failed_run_without_record" if run.ended_badly else "run_without_record"
        report.problems.append(ConsistencyProblem(
            kind=kind, flow_run_id=run.id, flow_name=run.flow_name, state=run.state_name,
            detail=(f"{run.emergency_type}: {run.name} ended {run.state_name}"
                    + (f" ({run.state_message})" if run.state_message else "")
                    + " and the register has no incident, signal or timeline entry from it")))
    for problem in report.problems:
        problem.severity = SEVERITY[problem.kind]
    return report
