"""Prefect records task runs asynchronously (the server's task-run recorder): a test that compares
what two readers see must first let the recorder catch up."""

from __future__ import annotations

import time
from uuid import UUID

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def task_runs_settled(run_ids, *, timeout: float = 60, quiet: float = 1.0) -> dict[str, int]:
    """Wait until every run's task runs are all final and their count has not moved for ``quiet``
    seconds; return the counts. Raises TimeoutError naming the runs still moving."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    stable_since = None
    with get_client(sync_client=True) as client:
        while True:
            counts, moving = {}, []
            for run_id in run_ids:
                tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])))
                counts[run_id] = len(tasks)
                if any(t.state is None or t.state.type.value not in FINAL for t in tasks):
                    moving.append(run_id)
            now = time.monotonic()
            if counts != last or moving:
                last, stable_since = counts, now
            elif now - stable_since >= quiet:
                return counts
            if now > deadline:
                raise TimeoutError(f"task runs still being recorded for {moving or list(counts)}")
            time.sleep(0.25)
