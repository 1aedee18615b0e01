"""应急演练 — drills: the real emergency flow on a sandbox copy of the agency, measured and scored.

    prepare → inject → respond (the type's own flow, in drill mode, on the sandbox) → score → report

The emergency flow is the one real incidents run, called unchanged: only the runtime it asks for
is the sandbox's (agency folder and scratch), so its detectors read the broken copy, its runbook
repairs the copy, and every message it sends is marked 【演练】 and goes to the drill recipients.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, tags
from prefect.runtime import flow_run

from ledgerguard.drills.models import DrillOutcome, DrillRequest, TabletopRequest
from ledgerguard.models import utcnow
from ledgerguard.runtime import get_runtime, sandboxed
from tasks.drill import (
    drill_tags,
    emergency_request,
    inject_fault,
    prepare_drill,
    sandbox_settings,
    score_drill,
    send_drill_report,
    stand_in,
    wait_for_people,
)
from tasks.tabletop import record_tabletop, walk_runbook


def _drill_id() -> str:
    # One drill per flow run: a retried run finds its own drill row and sandbox again.
    return str(flow_run.id).replace("-", "") if flow_run.id else utcnow().strftime("%Y%m%d%H%M%S%f")


@flow(name="drill", flow_run_name="drill-{request.emergency_type}", validate_parameters=True, persist_result=True)
def drill(request: DrillRequest) -> DrillOutcome:
    """Break a sandbox copy the scenario's way, run the type's real flow on it, score the response."""
    from flows import EMERGENCY_FLOWS

    plan = prepare_drill(request, _drill_id())
    injected = inject_fault(plan)
    emergency_flow = EMERGENCY_FLOWS[plan["emergency_type"]]
    with sandboxed(sandbox_settings(plan)), tags(*drill_tags(plan["drill_id"])), \
            stand_in(plan, injected, enabled=request.stand_in) as answers:
        state = emergency_flow(emergency_request(plan, injected), return_state=True)
        flow_state = {"state": state.type.value,
                      "error": None if state.is_completed() else f"{state.type.value}: {state.message or ''}"}
        wait_for_people(plan, injected)
    outcome = score_drill(plan, injected, flow_state, list(answers))
    return send_drill_report(outcome)


@flow(name="monthly-drill", validate_parameters=True)
def monthly_drill(stand_in: bool = True) -> DrillOutcome:
    """The month's drill: one emergency type, rotating through drills.yaml's order."""
    from ledgerguard.drills.service import pick_monthly

    catalog = get_runtime().catalog
    local = utcnow().astimezone(get_runtime().agency.tz)
    emergency_type = pick_monthly(policy=catalog.drills, type_ids=list(catalog.entries), on=local)
    get_run_logger().info("this month's drill: %s", emergency_type)
    return drill(DrillRequest(emergency_type=emergency_type, stand_in=stand_in, requested_by="schedule"))


@flow(name="full-drill", validate_parameters=True)
def full_drill(stand_in: bool = True) -> list[DrillOutcome]:
    """The yearly full drill: every emergency type, one after another, each on its own sandbox."""
    catalog = get_runtime().catalog
    order = [t for t in catalog.drills.rotation if t in catalog] + sorted(set(catalog.entries)
                                                                          - set(catalog.drills.rotation))
    results = []
    for emergency_type in order:
        state = drill(DrillRequest(emergency_type=emergency_type, stand_in=stand_in, requested_by="schedule"),
                      return_state=True)
        if state.is_completed():
            results.append(state.result())
        else:
            get_run_logger().error("drill of %s ended %s: %s", emergency_type, state.type.value, state.message)
    return results


@flow(name="tabletop", flow_run_name="tabletop-{request.emergency_type}", validate_parameters=True,
      persist_result=True)
def tabletop(request: TabletopRequest) -> DrillOutcome:
    """桌面推演: the team walks the runbook; the run asks, step by step, through the UI's forms."""
    answers = walk_runbook(request, _drill_id())
    outcome = record_tabletop(request, answers)
    return send_drill_report(outcome)
