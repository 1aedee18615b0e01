"""A second person at the keyboard: answers the approval forms of paused runs, through the same
Prefect API the UI's Resume dialog uses (``resume_flow_run`` with the typed input)."""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator


def paused_runs(prefix: str = "approval-") -> list:
    """Paused (not suspended) flow runs whose pause key starts with ``prefix``."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
    return [r for r in runs if (r.state.state_details.pause_key or "").startswith(prefix)]


def wait_for_paused(prefix: str = "approval-", *, timeout: float = 60, exclude: set[str] = frozenset()):
    from ledgerguard.embedded import wait_until

    found: list = []

    def ready() -> bool:
        found[:] = [r for r in paused_runs(prefix) if f"{r.id}:{r.state.state_details.pause_key}" not in exclude]
        return bool(found)

    wait_until(ready, timeout=timeout, interval=0.3, what=f"a run paused for {prefix}*")
    return found[0]


def form_options(run, field: str) -> list[str]:
    """The choices the run's form offers for ``field`` (its JSON schema's enum)."""
    from tasks.people import form_choices

    return form_choices(run, field)


def answer(run, run_input: dict) -> None:
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(run.id, run_input=run_input)


@contextlib.contextmanager
def approving(by: str | None = None, *, decision: str = "approve", reason: str = "checked the staged copy",
              choose: Callable | None = None, api_url: str | None = None) -> Iterator[list[dict]]:
    """Until the block ends, ``by`` (default: the first approver the form offers) answers every
    approval form that appears (in a thread), on the Prefect API in use or at ``api_url``.

    Yields the list of answers given (run id, pause key, input). ``choose(run)`` may return a
    different input for a run, or None to leave it alone.
    """
    given: list[dict] = []
    errors: list[str] = []
    stop = threading.Event()
    seen: set[str] = set()

    def loop() -> None:
        if api_url:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: api_url}):
                return answer_forms()
        return answer_forms()

    def answer_forms() -> None:
        while not stop.is_set():
            try:
                for run in paused_runs():
                    mark = f"{run.id}:{run.state.state_details.pause_key}"
                    if mark in seen:
                        continue
                    run_input = choose(run) if choose else {
                        "approver": by or form_options(run, "approver")[0], "decision": decision, "reason": reason}
                    if run_input is None:
                        seen.add(mark)
                        continue
                    answer(run, run_input)
                    seen.add(mark)
                    given.append({"run": str(run.id), "key": run.state.state_details.pause_key, "input": run_input})
            except Exception as exc:  # noqa: BLE001 — the run may just have left the pause; look again
                errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.3)

    # Prefect's settings (the test harness's API URL) live in context variables: carry them over.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(loop,), daemon=True, name="approver")
    thread.start()
    try:
        yield given
    finally:
        stop.set()
        thread.join(timeout=5)
        if errors and not given:
            raise AssertionError("the approver could not answer any form: " + "; ".join(dict.fromkeys(errors)))
