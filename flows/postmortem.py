"""Post-mortems (issue 7): one incident's record from Prefect's run history and the register."""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, Field

from ledgerguard.compliance.postmortem import PostmortemReviewInput
from tasks.postmortem import PostmortemOutcome, build_and_send_postmortem, enter_review, incidents_due_postmortem


class PostmortemRequest(BaseModel):
    """Build (and send) an incident's post-mortem; with a review, record it first."""

    incident_id: str = Field(min_length=6, description="Incident id from the register")
    review: PostmortemReviewInput | None = Field(
        None, description="Root cause, contributing factors, lessons and action items, entered by a person")
    send: bool = Field(True, description="Email it to the management list (once per state and review revision)")


@flow(name="postmortem", flow_run_name="postmortem-{request.incident_id}", validate_parameters=True)
def postmortem(request: PostmortemRequest) -> PostmortemOutcome:
    """Record the person's review when there is one, then build the post-mortem from Prefect's
    runs and the register in Chinese and English, store it as an artifact and send it."""
    if request.review is not None:
        enter_review(request.incident_id, request.review)
    return build_and_send_postmortem(request.incident_id, send=request.send)


@flow(name="postmortem-sweep")
def postmortem_sweep(days: int = 7) -> list[PostmortemOutcome]:
    """Every incident resolved or closed in the last ``days`` days gets its post-mortem; one
    already sent for its state and review revision is not sent again."""
    outcomes = []
    for incident_id in incidents_due_postmortem(days):
        state = build_and_send_postmortem(incident_id, return_state=True)
        if state.is_completed():
            outcomes.append(state.result())
    return outcomes
