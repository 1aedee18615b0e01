"""Read the run history out of Prefect's API into plain records (ledgerguard.compliance.models).

Prefect is the record of what ran, when and how it ended; it keeps events for days and flow runs
until a vacuum, so post-mortems, the monthly report and the consistency check read it here, once,
and keep what they need. Every reader works against whatever server `PREFECT_API_URL` (or the
test harness) names. Log lines pass through the same masking as everything else that leaves.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowFilter,
    FlowFilterId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterId,
)
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.exceptions import ObjectNotFound

from ledgerguard.compliance.models import (
    EMERGENCY_TAG,
    ArtifactRecord,
    FlowRunRecord,
    LogLine,
    RunHistory,
    TaskRunRecord,
)
from ledgerguard.masking import mask_text
from ledgerguard.models import utcnow

PAGE = 200
LOGS_PER_RUN = 1000  # read in pages of PAGE (the API's own limit)


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(str(value))
    except (TypeError, ValueError):
        return None


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    return float(value.total_seconds() if hasattr(value, "total_seconds") else value)


def _state(obj) -> tuple[str | None, str | None, str | None]:
    state = getattr(obj, "state", None)
    if state is None:
        return None, None, None
    return (state.type.value if state.type else None), state.name, (mask_text(state.message) if state.message else None)


def _flow_run(run, flow_names: dict[str, str]) -> FlowRunRecord:
    state_type, state_name, message = _state(run)
    return FlowRunRecord(
        id=str(run.id), name=run.name, flow_name=flow_names.get(str(run.flow_id), ""),
        deployment_id=str(run.deployment_id) if run.deployment_id else None,
        parent_task_run_id=str(run.parent_task_run_id) if run.parent_task_run_id else None,
        state_type=state_type, state_name=state_name, state_message=message,
        created=run.created, expected_start_time=run.expected_start_time,
        start_time=run.start_time, end_time=run.end_time, run_seconds=_seconds(run.total_run_time),
        tags=sorted(run.tags or []))


def _flow_names(client, runs) -> dict[str, str]:
    ids = sorted({run.flow_id for run in runs if run.flow_id})
    names: dict[str, str] = {}
    for start in range(0, len(ids), PAGE):
        chunk = ids[start:start + PAGE]
        for flow in client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=chunk)), limit=len(chunk)):
            names[str(flow.id)] = flow.name
    return names


def _parents(client, records: list[FlowRunRecord]) -> None:
    """A subflow names the task run that started it; that task run names the parent flow run."""
    wanted = sorted({UUID(r.parent_task_run_id) for r in records if r.parent_task_run_id})
    owner: dict[str, str] = {}
    for start in range(0, len(wanted), PAGE):
        chunk = wanted[start:start + PAGE]
        for tr in client.read_task_runs(task_run_filter=TaskRunFilter(id=TaskRunFilterId(any_=chunk)), limit=len(chunk)):
            owner[str(tr.id)] = str(tr.flow_run_id) if tr.flow_run_id else None
    for record in records:
        if record.parent_task_run_id:
            record.parent_flow_run_id = owner.get(record.parent_task_run_id)


def _details(client, records: list[FlowRunRecord], *, logs_per_run: int) -> None:
    """Task runs, logs and artifacts of each run, read per run so one chatty run cannot crowd
    out the others."""
    for record in records:
        run_id = UUID(record.id)
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=PAGE)
        for tr in sorted(task_runs, key=lambda t: (t.start_time or t.expected_start_time or t.created)):
            state_type, state_name, _ = _state(tr)
            record.task_runs.append(TaskRunRecord(
                id=str(tr.id), name=tr.name, task_key=tr.task_key or "", state_type=state_type,
                state_name=state_name, start_time=tr.start_time, end_time=tr.end_time,
                run_seconds=_seconds(tr.total_run_time), run_count=tr.run_count or 0))
        if logs_per_run:
            logs, offset = [], 0
            while offset < logs_per_run:
                page = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                                        limit=min(PAGE, logs_per_run - offset), offset=offset,
                                        sort=LogSort.TIMESTAMP_ASC)
                logs += page
                if len(page) < PAGE:
                    break
                offset += PAGE
            record.logs = [LogLine(at=log.timestamp, level=log.level, name=log.name or "",
                                   message=mask_text(log.message or ""),
                                   task_run_id=str(log.task_run_id) if log.task_run_id else None)
                           for log in logs]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])), limit=PAGE)
        record.artifacts = [ArtifactRecord(key=a.key, type=a.type, description=a.description, created=a.created,
                                           task_run_id=str(a.task_run_id) if a.task_run_id else None)
                            for a in artifacts]


def read_runs(*, run_ids: Iterable[str], details: bool = True, logs_per_run: int = LOGS_PER_RUN) -> RunHistory:
    """These flow runs as Prefect has them now; ids it no longer has are listed as missing."""
    wanted = list(dict.fromkeys(str(r) for r in run_ids if r))
    valid = [u for u in (_uuid(r) for r in wanted) if u is not None]
    with get_client(sync_client=True) as client:
        found = []
        for start in range(0, len(valid), PAGE):
            chunk = valid[start:start + PAGE]
            found += client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)),
                                           limit=len(chunk))
        names = _flow_names(client, found)
        records = sorted((_flow_run(run, names) for run in found),
                         key=lambda r: (r.start_time or r.expected_start_time or r.created or utcnow()))
        _parents(client, records)
        if details:
            _details(client, records, logs_per_run=logs_per_run)
        api_url = str(client.api_url) if getattr(client, "api_url", None) else None
    have = {r.id for r in records}
    return RunHistory(runs=records, missing=[r for r in wanted if r not in have], read_at=utcnow(), api_url=api_url)


def read_tagged_runs(*, tags_any: list[str], details: bool = False) -> RunHistory:
    """Every flow run carrying any of these tags (e.g. ``incident:<id>``)."""
    with get_client(sync_client=True) as client:
        runs, offset = [], 0
        while True:
            page = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(any_=tags_any)),
                                         sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=PAGE, offset=offset)
            runs += page
            if len(page) < PAGE:
                break
            offset += PAGE
        names = _flow_names(client, runs)
        records = [_flow_run(run, names) for run in runs]
        _parents(client, records)
        if details:
            _details(client, records, logs_per_run=LOGS_PER_RUN)
    return RunHistory(runs=records, read_at=utcnow())


def read_runs_between(*, start: datetime, end: datetime, emergency_only: bool = False) -> RunHistory:
    """Flow runs expected to start in [start, end): the month's history for the report and the
    consistency check. ``emergency_only`` keeps the runs an emergency flow or its stages tagged."""
    flow_run_filter = FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=start, before_=end))
    with get_client(sync_client=True) as client:
        runs, offset = [], 0
        while True:
            page = client.read_flow_runs(flow_run_filter=flow_run_filter, sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                                         limit=PAGE, offset=offset)
            runs += page
            if len(page) < PAGE:
                break
            offset += PAGE
        # `before_` is inclusive in Prefect's filter; the range here is half-open.
        runs = [r for r in runs if r.expected_start_time is None or r.expected_start_time < end]
        names = _flow_names(client, runs)
        records = [_flow_run(run, names) for run in runs]
        _parents(client, records)
    if emergency_only:
        records = [r for r in records if any(t.startswith(EMERGENCY_TAG) for t in r.tags)]
    return RunHistory(runs=records, read_at=utcnow())


def delete_flow_run(run_id: str) -> bool:
    """Remove a flow run from Prefect (what a vacuum or a careless hand does); False if absent."""
    with get_client(sync_client=True) as client:
        try:
            client.delete_flow_run(UUID(str(run_id)))
        except ObjectNotFound:
            return False
    return True
