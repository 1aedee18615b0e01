"""The shared response pipeline: detection → classification → notification → remediation → record.

Every emergency type runs this one pipeline inside its own flow run (so that run is the one a
person's approval form suspends); what differs between types is catalog data (detectors, rules,
routing, runbook, templates), never a branch in here. `respond` is the same pipeline as a flow
of its own, for a request of any type.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, tags

from ledgerguard.masking import install_log_masking
from ledgerguard.response.models import ResponseOutcome, ResponseRequest, StepResult
from ledgerguard.runtime import get_runtime
from tasks.approve import approve_step
from tasks.classify import classify_incident
from tasks.detect import detect
from tasks.notify import notify_responders
from tasks.record import record_clear, record_incident
from tasks.remediate import run_runbook_step


PREFECT_LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs")


@flow(name="respond", flow_run_name="respond-{request.emergency_type}", validate_parameters=True,
      persist_result=True)
def respond(request: ResponseRequest) -> ResponseOutcome:
    return pipeline(request)


def pipeline(request: ResponseRequest) -> ResponseOutcome:
    """detect → classify → notify → remediate → record, in the calling flow run.

    A deployed run that suspends for an approval starts again from the top when it is resumed;
    every task before that point returns its result from the first attempt (cached per run), so
    nothing is detected, graded or sent twice.
    """
    # Evidence and facts can carry ID, bank-card and phone numbers: mask them in every log line.
    install_log_masking(PREFECT_LOGGERS)
    detection = detect(request)
    if not detection.found:
        return record_clear(request, detection)

    classified = classify_incident(request, detection)

    notify_state = notify_responders(request.emergency_type, classified, return_state=True)
    notified, notify_error = [], None
    if notify_state.is_completed():
        notified = notify_state.result()
    else:
        # Failed deliveries stay in the register as failed and are retried by the next run;
        # the runbook must not wait for the mail server.
        notify_error = str(notify_state.message or "notification failed")

    steps = remediate(request, classified.incident_id) if request.remediate else []
    return record_incident(request, classified, steps, notified, notify_error)


def run_respond(request: ResponseRequest) -> ResponseOutcome:
    """Run the shared pipeline in an emergency flow's own run, its tasks tagged from the start."""
    with tags(f"emergency:{request.emergency_type}", *(["drill"] if request.drill else [])):
        return pipeline(request)


def remediate(request: ResponseRequest, incident_id: str) -> list[StepResult]:
    """Run the runbook in order; a failed step stops it unless the catalog says continue.

    A destructive step (and an approval step) first waits, paused, for a person other than the
    requester to approve it; a rejection or a time-out stops the runbook or skips the step, as
    the catalog's ``on_reject`` says. The escalation runs beside this in its own runs: nothing
    here waits for the acknowledgement.
    """
    entry = get_runtime().catalog.get(request.emergency_type)
    results: list[StepResult] = []
    for step in entry.runbook:
        if step.needs_approval:
            decided = approve_step(emergency_type=request.emergency_type, incident_id=incident_id, step=step,
                                   requested_by=request.requested_by)
            if decided is not None:
                results.append(decided)
                if decided.status == "waiting":  # another run of the incident holds the approval
                    get_run_logger().info("runbook left at %s: %s", step.id, decided.summary)
                    break
                if decided.status == "rejected" and step.on_reject == "stop":
                    get_run_logger().warning("runbook stopped at %s: %s", step.id, decided.summary)
                    break
                continue
        state = run_runbook_step.with_options(
            retries=step.retries, retry_delay_seconds=2, timeout_seconds=step.timeout_minutes * 60,
        )(request.emergency_type, step.id, incident_id, request.resource, as_of=request.observed_at,
          return_state=True)
        if state.is_completed():
            results.append(state.result())
            continue
        results.append(StepResult(step_id=step.id, kind=step.kind, status="failed",
                                  summary=str(state.message or "failed")))
        if step.on_failure == "stop":
            get_run_logger().error("runbook stopped at %s: %s", step.id, state.message)
            break
    return results
