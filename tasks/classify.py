"""Classify stage: open or join the incident, keep the evidence, grade it by the rubric."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import DEFAULT
from prefect.runtime import flow_run

from ledgerguard.classification.service import classify
from ledgerguard.escalation.service import freeze_chain
from ledgerguard.models import Detection, Stage
from ledgerguard.register import service as register
from ledgerguard.response.models import Classified, ResponseRequest
from ledgerguard.runtime import get_runtime
from tasks.record import tag_flow_runs


@task(name="classify", retries=2, retry_delay_seconds=2, cache_policy=DEFAULT, persist_result=True)
def classify_incident(request: ResponseRequest, detection: Detection) -> Classified:
    runtime = get_runtime()
    entry = runtime.catalog.get(request.emergency_type)
    language = runtime.settings.language
    signal = request.to_signal()
    run_id = str(flow_run.id) if flow_run.id else None
    name = entry.name.zh if language.startswith("zh") else entry.name.en

    with runtime.session() as db_session:
        # Opening or joining writes its own timeline entry and links this flow run.
        incident, created = register.open_or_join_incident(
            db_session=db_session, signal=signal, title=f"{name}: {request.resource}",
            flow_run_id=run_id, flow_name=entry.flow, actor=request.requested_by)
        for finding in detection.findings:
            register.record_finding(db_session=db_session, incident_id=incident.id, finding=finding)
            register.append_timeline(
                db_session=db_session, incident_id=incident.id, stage=Stage.DETECT.value,
                kind="finding", message=f"{finding.detector}: {finding.summary}",
                data={"detector": finding.detector, "evidence": len(finding.evidence)}, flow_run_id=run_id)
        incident_id = incident.id

    assessment = classify(entry=entry, rubric=runtime.catalog.rubric, facts=detection.facts,
                          detected_at=signal.observed_at, calendar=runtime.catalog.calendar,
                          language=language)
    affected = [str(c) for c in detection.facts.get("affected_clients") or []]
    with runtime.session() as db_session:
        register.apply_assessment(db_session=db_session, incident_id=incident_id,
                                  assessment=assessment, affected_clients=affected)
        register.append_timeline(
            db_session=db_session, incident_id=incident_id, stage=Stage.CLASSIFY.value,
            kind="classified",
            message=(f"{assessment.level.label(language)} ({assessment.priority.value}: "
                     f"impact {assessment.impact.value} × urgency {assessment.urgency.value}); "
                     f"grade {assessment.regulatory_grade.value}"),
            data={"fired": [line.model_dump(mode="json") for line in assessment.fired]},
            flow_run_id=run_id)
        # Frozen now, read from the incident from here on: editing the chain later changes
        # only incidents graded after the edit.
        freeze_chain(db_session=db_session, incident_id=incident_id, entry=entry, rubric=runtime.catalog.rubric,
                     level=int(assessment.level.value), flow_run_id=run_id)

    tags = [f"emergency:{entry.id}", f"level:{assessment.level.value}", f"incident:{incident_id}"]
    if request.drill:
        tags.append("drill")
    tag_flow_runs(tags)
    get_run_logger().warning("incident %s %s: %s", incident_id, "opened" if created else "joined",
                             assessment.level.label(language))
    return Classified(incident_id=incident_id, created=created, affected_clients=affected,
                      assessment=assessment.model_dump(mode="json"))
