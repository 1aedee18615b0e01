"""Remediate: run one runbook step, recorded in the register, safe to repeat."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledgerguard.models import ActionStatus, IncidentStatus, Stage, StepKind, utcnow

REDETECT = "verify.redetect"


class StepFailed(RuntimeError):
    """An automatic step did not succeed; the message says why."""


@dataclass
class StepOutcome:
    step_id: str
    kind: str
    status: str
    summary: str
    output: dict[str, Any] = field(default_factory=dict)


def _text(value, language: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return getattr(value, "zh" if language.startswith("zh") else "en", None) or str(value)


def run_step(
    *,
    runtime,
    entry,
    step,
    incident_id: str,
    resource: str,
    flow_run_id: str | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> StepOutcome:
    """Run one step of the type's runbook.

    Automatic steps run their action; a step that already succeeded for this incident is not
    run again (a re-run flow picks up where the last one stopped). Manual steps are opened as a
    checklist item for a person; approval steps wait, open, for a person's decision.
    """
    from ledgerguard.register import service as register

    language = runtime.settings.language
    title = _text(step.title, language)
    now = now or utcnow()
    kind = StepKind(step.kind)
    with runtime.session() as db_session:
        existing = register.get_action(db_session=db_session, incident_id=incident_id, step_id=step.id)
        if existing is not None and existing.status == ActionStatus.SUCCEEDED.value:
            return StepOutcome(step.id, kind.value, "skipped",
                               f"{title}: already done", dict(existing.output or {}))
        register.start_action(db_session=db_session, incident_id=incident_id, step_id=step.id,
                              title=title, kind=kind.value, flow_run_id=flow_run_id)

    if kind is not StepKind.AUTOMATIC:
        waiting = "awaiting a person" if kind is StepKind.MANUAL else "awaiting approval"
        with runtime.session() as db_session:
            register.finish_action(db_session=db_session, incident_id=incident_id, step_id=step.id,
                                   status=ActionStatus.OPEN, output={"waiting": waiting})
            register.append_timeline(db_session=db_session, incident_id=incident_id,
                                     stage=Stage.REMEDIATE.value, kind=f"step.{kind.value}.open",
                                     message=f"{title} ({waiting})", flow_run_id=flow_run_id,
                                     data={"step": step.id})
        return StepOutcome(step.id, kind.value, ActionStatus.OPEN.value, f"{title}: {waiting}")

    try:
        ok, summary, output = _execute(runtime=runtime, entry=entry, step=step,
                                       incident_id=incident_id, resource=resource, now=now,
                                       dry_run=dry_run)
        error = None if ok else summary
    except Exception as exc:  # noqa: BLE001 — recorded, then raised for Prefect's retries
        ok, summary, output, error = False, f"{type(exc).__name__}: {exc}", {}, f"{type(exc).__name__}: {exc}"

    status = ActionStatus.SUCCEEDED if ok else ActionStatus.FAILED
    with runtime.session() as db_session:
        register.finish_action(db_session=db_session, incident_id=incident_id, step_id=step.id,
                               status=status, output=output, error=error)
        register.append_timeline(db_session=db_session, incident_id=incident_id,
                                 stage=Stage.REMEDIATE.value,
                                 kind="step.succeeded" if ok else "step.failed",
                                 message=f"{title}: {summary}", flow_run_id=flow_run_id,
                                 data={"step": step.id, "action": step.action, "output": output})
    if not ok:
        raise StepFailed(f"runbook step {step.id} ({step.action}) failed: {summary}")
    return StepOutcome(step.id, kind.value, status.value, summary, output)


def tick_manual_step(*, db_session, incident_id: str, step, by: str, via: str, note: str = "",
                     language: str = "zh-CN", flow_run_id: str | None = None) -> bool:
    """A person says they did a manual step; True when it was still open (now done).

    The step's row becomes ``succeeded`` with who, how and the note; the timeline records it.
    Ticking a step that is already done changes nothing.
    """
    from ledgerguard.register import service as register

    if StepKind(step.kind) is not StepKind.MANUAL:
        raise ValueError(f"{step.id} is a {step.kind} step; only manual steps are ticked by a person")
    existing = register.get_action(db_session=db_session, incident_id=incident_id, step_id=step.id)
    if existing is not None and existing.status == ActionStatus.SUCCEEDED.value:
        return False
    title = _text(step.title, language)
    if existing is None:
        register.start_action(db_session=db_session, incident_id=incident_id, step_id=step.id, title=title,
                              kind=StepKind.MANUAL.value, flow_run_id=flow_run_id)
    register.finish_action(db_session=db_session, incident_id=incident_id, step_id=step.id,
                           status=ActionStatus.SUCCEEDED, output={"done_by": by, "via": via, "note": note})
    register.append_timeline(db_session=db_session, incident_id=incident_id, stage=Stage.REMEDIATE.value,
                             kind="step.manual.done", actor=by, flow_run_id=flow_run_id,
                             message=f"{title}: done by {by} via {via}" + (f" — {note}" if note else ""),
                             data={"step": step.id, "by": by, "via": via, "note": note})
    return True


def open_manual_steps(*, db_session, entry, incident_id: str) -> list:
    """The type's manual steps that this incident still has open (in runbook order)."""
    from ledgerguard.register import service as register

    status = {a.step_id: a.status for a in register.list_actions(db_session=db_session, incident_id=incident_id)}
    return [s for s in entry.runbook
            if StepKind(s.kind) is StepKind.MANUAL and status.get(s.id) == ActionStatus.OPEN.value]


def _execute(*, runtime, entry, step, incident_id, resource, now, dry_run):
    if step.action == REDETECT:
        # Verification is the same detectors that raised the incident, run again on live data.
        from ledgerguard.response.detection import run_detectors

        detection = run_detectors(entry=entry, agency=runtime.agency, resource=resource,
                                  scratch_dir=runtime.settings.scratch_dir / incident_id, now=now)
        if detection.found:
            still = "; ".join(f.summary for f in detection.findings)
            return False, f"detectors still fire: {still}", {"findings": [f.summary for f in detection.findings]}
        return True, "detectors are quiet: " + "; ".join(detection.clear_reasons), {
            "checked": detection.checked, "clear_reasons": detection.clear_reasons}

    from ledgerguard.remediation import get_action
    from ledgerguard.remediation.base import ActionContext

    action = get_action(step.action)
    ctx = ActionContext(agency=runtime.agency, resource=resource, params=dict(step.params or {}),
                        now=now, scratch_dir=runtime.settings.scratch_dir, incident_id=incident_id,
                        dry_run=dry_run)
    result = action(ctx)
    return result.ok, result.summary, dict(result.output or {})


def decide_status(*, steps, remediated: bool) -> IncidentStatus | None:
    """Where the runbook left the incident.

    Resolved only when every automatic step (the verification included) succeeded and no
    manual or approval step is still open; mitigated when the automatic part is done but a
    person still has something to do; unchanged (None) when remediation did not run or failed.
    """
    if not remediated or not steps:
        return None
    statuses = [(s.kind, s.status) for s in steps]
    automatic_ok = all(status in ("succeeded", "skipped") for kind, status in statuses if kind == "automatic")
    if not automatic_ok:
        return None
    # A step still waiting for a person, or one a person refused, leaves the rest to people.
    if any(status in ("open", "rejected") for _, status in statuses):
        return IncidentStatus.MITIGATED
    return IncidentStatus.RESOLVED
