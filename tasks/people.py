"""People in the loop, on Prefect: typed forms on paused and suspended runs, and the runs that
wait for a person (escalation and checklist rounds).

Two ways to wait, both bounded:

- ``wait_for_person`` pauses the *current* run in its process (approvals inside an emergency run).
  Prefect's own ``pause_flow_run`` lets a time-out fail the run; here the run resumes itself when
  the wait is over, so the flow records the miss and goes on as the catalog says.
- A *round* (escalation, checklist) schedules its successor in Prefect as the timer, then
  suspends with its form: the process exits, no runner slot is held while people take their
  time. An answer cancels (or brings forward) the successor; no answer lets the successor run,
  which closes the old form and does the next round's work.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from uuid import UUID

from prefect.input import RunInput
from pydantic import ConfigDict, Field, create_model

from ledgerguard.models import utcnow

ESCALATION_DEPLOYMENT = "escalation/escalation"
CHECKLIST_DEPLOYMENT = "checklist/checklist"
FORM_GRACE = timedelta(minutes=15)
"""A suspended form outlives its round's wait by this much, so the successor run closes it before
Prefect's pause expiry would fail it."""


# --- forms ---------------------------------------------------------------------------------------


class FormInput(RunInput):
    """A resume form; fields it no longer has (a step ticked elsewhere meanwhile) are ignored."""

    model_config = ConfigDict(extra="ignore")


def people_choice(ids: list[str]) -> Any:
    if not ids:
        raise ValueError("nobody in contacts.yaml can fill in this form")
    return Literal[tuple(ids)]  # type: ignore[valid-type]


def acknowledgement_form(*, people: list[str]):
    """The form a responder fills to take the incident over (确认接手)."""
    return create_model(
        "Acknowledgement", __base__=FormInput,
        responder=(people_choice(people), Field(title="确认人 Responder", description="your id in contacts.yaml")),
        note=(str, Field("", title="备注 Note", max_length=2000)),
    )


def approval_form(*, people: list[str]):
    """Approve or reject a runbook step (four eyes: the run refuses the requester's own approval)."""
    return create_model(
        "Approval", __base__=FormInput,
        approver=(people_choice(people), Field(title="审批人 Approver", description="your id in contacts.yaml")),
        decision=(Literal["approve", "reject"], Field(title="决定 Decision", description="approve 批准 / reject 驳回")),
        reason=(str, Field("", title="理由 Reason", max_length=2000, description="required to reject")),
    )


def checklist_form(*, people: list[str], steps: list[tuple[str, str]]):
    """One switch per open manual step (``(step id, title)``): tick what you did."""
    fields: dict[str, Any] = {
        "responder": (people_choice(people), Field(title="处理人 Responder", description="your id in contacts.yaml")),
    }
    for step_id, title in steps:
        fields[step_id] = (bool, Field(False, title=title))
    fields["note"] = (str, Field("", title="备注 Note", max_length=2000))
    return create_model("Checklist", __base__=FormInput, **fields)


# --- waiting inside the current run ---------------------------------------------------------------


def wait_for_person(model, *, timeout_seconds: float, key: str, poll_seconds: float = 1.0):
    """Pause the current flow run with ``model`` as its resume form; the input, or None when
    ``timeout_seconds`` passed without one (the run then resumes itself and goes on).

    The server's pause deadline is set ``FORM_GRACE`` later than ours, so the run can still leave
    the paused state on its own; a person who answers at the very last moment wins.
    """
    from prefect import get_client
    from prefect.context import FlowRunContext
    from prefect.input.run_input import keyset_from_paused_state, run_input_subclass_from_type
    from prefect.states import Paused, Running
    from prefect.utilities.engine import propose_state_sync

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("wait_for_person must be called inside a flow run")
    run_id = context.flow_run.id
    model = run_input_subclass_from_type(model)
    proposed = Paused(timeout_seconds=int(timeout_seconds + FORM_GRACE.total_seconds()), reschedule=False,
                      pause_key=key)
    keyset = keyset_from_paused_state(proposed)
    proposed.state_details.run_input_keyset = keyset

    def answered(client) -> bool:
        return _has_input(client, run_id, keyset["response"])

    with get_client(sync_client=True) as client:
        state = propose_state_sync(client=client, state=proposed, flow_run_id=run_id)
        if state.is_running():  # this pause already happened in an earlier attempt of the run
            return model.load(keyset) if answered(client) else None
        if not state.is_paused():
            raise RuntimeError(f"the run could not pause for a person: {state.type.value} {state.message or ''}")
        model.save(keyset)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            time.sleep(min(poll_seconds, max(0.05, deadline - time.monotonic())))
            current = client.read_flow_run(run_id).state
            if current is not None and current.is_running():
                return model.load(keyset) if answered(client) else None
        propose_state_sync(client=client, state=Running(message="nobody answered in time"), flow_run_id=run_id)
        return model.load(keyset) if answered(client) else None


def suspend_for_person(model, *, key: str, timeout_seconds: float):
    """Suspend the current (deployed) run with ``model`` as its resume form: the process exits
    and the run starts again from the top when resumed. Called again on that new attempt, it
    returns the input — or None when the run was woken without one (its deadline passed)."""
    from prefect import get_client
    from prefect.context import FlowRunContext
    from prefect.flow_runs import suspend_flow_run
    from prefect.input.run_input import keyset_from_paused_state, run_input_subclass_from_type
    from prefect.states import Suspended

    run_id = FlowRunContext.get().flow_run.id
    with get_client(sync_client=True) as client:
        fired = key in (client.read_flow_run(run_id).empirical_policy.pause_keys or set())
        if fired:
            keyset = keyset_from_paused_state(Suspended(pause_key=key))
            model = run_input_subclass_from_type(model)
            return model.load(keyset) if _has_input(client, run_id, keyset["response"]) else None
    return suspend_flow_run(wait_for_input=model, key=key, timeout=int(timeout_seconds))


def _has_input(client, run_id, key: str) -> bool:
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    try:
        client.read_flow_run_input(flow_run_id=run_id, key=key)
    except ObjectNotFound:
        return False
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            return False
        raise
    return True


def wake_run(run_id: str, *, message: str) -> bool:
    """Start a suspended run again without an answer (its wait is over); False when it is not
    suspended any more (someone answered, or it ended)."""
    from prefect import get_client
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        if run.state is None or not run.state.is_paused():
            return False
        client.set_flow_run_state(run_id, Scheduled(message=message), force=True)
    return True


# --- rounds: runs scheduled in Prefect as the timer ----------------------------------------------


def form_choices(run, field: str) -> list[str]:
    """The choices a paused run's form offers for ``field`` (its JSON schema's enum)."""
    import json

    from prefect import get_client

    key = run.state.state_details.run_input_keyset["schema"]
    with get_client(sync_client=True) as client:
        schema = client.read_flow_run_input(flow_run_id=run.id, key=key)
    schema = json.loads(schema) if isinstance(schema, str) else schema
    return list(((schema.get("properties") or {}).get(field) or {}).get("enum") or [])


def ui_run_url(run_id: str | UUID | None) -> str | None:
    """The run's page in the Prefect UI (its Resume button opens the form)."""
    if not run_id:
        return None
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from ledgerguard.config import get_settings

    base = get_settings().ui_url or PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    return f"{base.rstrip('/')}/runs/flow-run/{run_id}" if base else None


def start_round(*, deployment: str, parameters: dict, at: datetime | None, key: str, tags: list[str],
                logger=None) -> str | None:
    """Create (once per ``key``) the run of ``deployment`` scheduled at ``at`` (now when None).

    Returns its id, or None when the deployment is not served here (a run without `ledgerguard
    serve`/`up`); the caller records that on the timeline. Prefect keeps the run if the runner is
    down and starts it late when it is back.
    """
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(deployment, parameters=parameters, scheduled_time=at, timeout=0, idempotency_key=key,
                             tags=tags, as_subflow=False)
    except ObjectNotFound:
        if logger is not None:
            logger.warning("deployment %s is not registered: start `ledgerguard serve` (or `up`)", deployment)
        return None
    return str(run.id)


def run_is_live(run_id: str | UUID | None) -> bool:
    """Whether a flow run can still act: not yet in a final state (a paused or suspended run
    waiting for a form counts). A run the API does not know, or an unreachable API, is not."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    if not run_id:
        return False
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(str(run_id)))
    except (ObjectNotFound, ValueError):
        return False
    return run.state is not None and not run.state.is_final()


def runs_tagged(*tags: str, states: tuple[str, ...] = ("PAUSED", "SCHEDULED", "PENDING", "RUNNING")) -> list:
    """Flow runs carrying every tag, in one of ``states``."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    flow_run_filter = FlowRunFilter(tags=FlowRunFilterTags(all_=list(tags)), state=FlowRunFilterState(
        type=FlowRunFilterStateType(any_=[StateType(s) for s in states])))
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=flow_run_filter, limit=200)


def close_runs(*, tags: list[str], message: str, exclude: set[str] = frozenset(),
               states: tuple[str, ...] = ("PAUSED", "SCHEDULED")) -> list[str]:
    """End the waiting runs with these tags: a form nobody needs any more is Completed (its
    message says why), a round not yet started is Cancelled. Returns the ids it ended."""
    from prefect import get_client
    from prefect.states import Cancelled, Completed

    ended = []
    with get_client(sync_client=True) as client:
        for run in runs_tagged(*tags, states=states):
            if str(run.id) in exclude:
                continue
            final = Completed(message=message) if run.state.is_paused() else Cancelled(message=message)
            result = client.set_flow_run_state(run.id, final)
            if result.status.value == "ACCEPT":
                ended.append(str(run.id))
    return ended


def bring_forward(run_id: str, *, message: str) -> None:
    """Start a scheduled round now instead of at its time (an answer came, the next form is due)."""
    from prefect import get_client
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_scheduled():
            client.set_flow_run_state(run_id, Scheduled(scheduled_time=datetime.now(timezone.utc), message=message),
                                      force=True)


def stop_escalation(*, incident_id: str, message: str, exclude: set[str] = frozenset()) -> list[str]:
    """Someone acknowledged (CLI, API, link, UI): close the incident's open escalation form and
    cancel its next round. Safe to call when Prefect has none (or is down: the next round sees
    the acknowledgement in the register and stops by itself)."""
    return close_runs(tags=["escalation", f"incident:{incident_id}"], message=message, exclude=exclude)


def seconds_until(moment: datetime) -> float:
    return max(0.0, (moment - utcnow()).total_seconds())
