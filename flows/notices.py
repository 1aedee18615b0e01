"""`send-notice` — a person approves (and sends) or rejects one notice draft from the Prefect UI.

The deployment's form is the typed :class:`ledgerguard.notices.models.NoticeDecision` (notice id,
approve/reject, who, why). The same rules as `ledgerguard notices approve/send/reject` apply: the
approver needs an approving role for the kind in contacts.yaml, and the draft file must still hold
the bytes that were drafted. Authorities' notices are recorded as "to be filed by hand".
"""

from __future__ import annotations

from prefect import flow

from ledgerguard.notices.models import NoticeDecision
from tasks.notices import decide_notice


@flow(name="send-notice", flow_run_name="send-notice-{decision.notice_id}", validate_parameters=True)
def send_notice(decision: NoticeDecision) -> dict:
    """Approve and send, or reject, one notice draft (the person and the reason go on the timeline)."""
    return decide_notice(decision)
