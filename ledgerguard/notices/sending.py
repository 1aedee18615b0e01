"""Send an approved notice: exactly the approved bytes, once per recipient, through the same
idempotent delivery path as every other message (``response.notifying.send_once``).

Prefect-free: `ledgerguard notices send` and the `send-notice` flow both call :func:`send_notice`.
Authorities (the CAC, the police, the PI authority) are reached through their portals, hotlines or
in person and LedgerGuard keeps no address for them: sending records "approved — to be filed by
hand" and a person records the filing with :func:`ledgerguard.notices.service.mark_filed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledgerguard.channels.contacts import Recipient, drill_recipients
from ledgerguard.channels.messaging import RenderedMessage
from ledgerguard.notices import service as notices
from ledgerguard.notices.drafting import load_runtime_policy
from ledgerguard.notices.models import Delivery, NoticeDecision, NoticeRefused, NoticeStatus

__all__ = ["SendResult", "client_recipient", "decide", "send_notice", "subject_of", "NOTICE_STAGE"]

NOTICE_STAGE = "notice"
"""The notifications' stage for notices: not ``notify``, so the redelivery of failed notifications
(which renders its template afresh) never sends a notice whose words nobody approved."""


@dataclass
class SendResult:
    notice: dict[str, Any]
    status: str  # sent | already_sent | to_file | failed
    message: str
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    obligations_met: list[str] = field(default_factory=list)


def subject_of(text: str) -> str:
    """The draft's own first heading is the subject, so the subject is part of what was approved."""
    for line in text.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()
    return ""


def client_recipient(*, runtime, client_id: str) -> Recipient:
    """Where a client's notice goes. clients.csv holds a client's legal representative and phone
    but no address a channel can reach, so the notice goes by email to the client's own accountant
    (clients.csv accountant_id → contacts.yaml), who passes it on; the role stays ``client`` so a
    drill never reaches a client through them."""
    try:
        client = runtime.agency.client(client_id)
    except Exception as exc:  # noqa: BLE001 — name the client and the file
        raise NoticeRefused(f"audience: {exc}") from None
    person = runtime.contacts.person(str(client.accountant_id))
    if person is None or not person.email:
        raise NoticeRefused(
            f"client {client_id} ({client.name}) cannot be reached: clients.csv has no address for clients and its "
            f"accountant {client.accountant_id!r} has " + ("no email in contacts.yaml" if person else
                                                            "no entry in contacts.yaml"))
    return Recipient(person_id=person.id, name=f"{client.name} (via {person.name})", role="client",
                     channel="email", address=person.email)


def send_notice(*, runtime, notice_id: str, by: str | None = None, flow_run_id: str | None = None) -> SendResult:
    """Send (or record as to be filed) one approved notice. A notice already sent sends nothing."""
    from ledgerguard.response.notifying import recipient_label, send_once

    policy = load_runtime_policy(runtime)
    with runtime.session(read_only=True) as db_session:
        row = notices.find_notice(db_session=db_session, ref=notice_id)
        snapshot = notices.describe(row)
        incident_drill = bool(row.incident_id and _is_drill(db_session, row.incident_id))
    kind = policy.kind(snapshot["kind"])
    if snapshot["status"] == NoticeStatus.SENT.value:
        return SendResult(notice=snapshot, status="already_sent",
                          message=f"notice {snapshot['id']} v{snapshot['version']} went out already "
                                  f"({snapshot['sent_at']}); nothing sent again")
    if snapshot["status"] != NoticeStatus.APPROVED.value:
        raise NoticeRefused(f"notice {snapshot['id']} v{snapshot['version']} is {snapshot['status']}: "
                            + ("approve it first (`ledgerguard notices approve " + snapshot["id"] + " --by <id>`)"
                               if snapshot["status"] == NoticeStatus.DRAFTED.value else "it cannot be sent"))
    sender = (by or snapshot["decided_by"] or "").strip()
    if runtime.contacts.person(sender) is None:
        raise NoticeRefused(f"by: unknown person {sender!r}: not in contacts.yaml")
    with runtime.session(read_only=True) as db_session:
        text = notices.verify_file(notices.find_notice(db_session=db_session, ref=snapshot["id"]))

    if kind.delivery == Delivery.BY_HAND:
        to = kind.to.get(snapshot["language"])
        with runtime.session() as db_session:
            row, _ = notices.mark_to_file(db_session=db_session, notice_id=snapshot["id"], by=sender, to=to,
                                          flow_run_id=flow_run_id)
            described = notices.describe(row)
        return SendResult(notice=described, status="to_file",
                          message=f"approved — to be filed by hand with {to}: LedgerGuard keeps no address for it "
                                  f"and sent nothing. File {snapshot['path']} on the authority's portal (or by "
                                  f"phone/in person), then record it: ledgerguard notices filed {snapshot['id']} "
                                  f"--by <id> --ref <reference>")

    recipient = client_recipient(runtime=runtime, client_id=snapshot["audience"])
    message = RenderedMessage(name=kind.template, subject=subject_of(text), text=text, markdown=text,
                              language=snapshot["language"])
    outcome = send_once(runtime=runtime, incident_id=snapshot["incident_id"], stage=NOTICE_STAGE,
                        step=f"notice:{snapshot['id']}:v{snapshot['version']}", recipient=recipient,
                        message=message, template=kind.template, flow_run_id=flow_run_id)
    redirected = incident_drill and bool(drill_recipients(runtime.contacts))
    delivery = {"to": recipient.name, "client": snapshot["audience"], "via": recipient.person_id,
                "channel": recipient.channel, "address": recipient.address, "status": outcome.status,
                "key": recipient_label(recipient)}
    if incident_drill:
        delivery["drill"] = "redirected to the drill recipients" if redirected else "not sent (no drill recipients)"
    if outcome.status == "failed":
        return SendResult(notice=snapshot, status="failed", deliveries=[delivery],
                          message=f"delivery to {recipient.name} failed: {outcome.error}; the notice stays approved "
                                  f"and `ledgerguard notices send {snapshot['id']}` tries again (never twice)")
    if incident_drill and not redirected:
        # A drill never reaches a client; without a drill mailbox nothing went anywhere, so the
        # notice is not recorded as sent (send_once noted the suppression on the timeline).
        return SendResult(notice=snapshot, status="suppressed", deliveries=[delivery],
                          message=f"drill: the notice for {recipient.name} was not sent (contacts.yaml lists no "
                                  f"drill_recipients); it stays approved")
    with runtime.session() as db_session:
        row = notices.mark_sent(db_session=db_session, notice_id=snapshot["id"], by=sender, sent_to=[delivery],
                                flow_run_id=flow_run_id)
        met = notices.fulfil_obligations(db_session=db_session, row=row, policy=policy, flow_run_id=flow_run_id)
        described = notices.describe(row)
    where = (f"{recipient.address} (the client's accountant, who passes it on)" if not incident_drill
             else "the drill recipients instead (a drill never reaches a client)")
    return SendResult(notice=described, status="sent", deliveries=[delivery], obligations_met=met,
                      message=f"sent {kind.name.get(snapshot['language'])} v{snapshot['version']} for "
                              f"{recipient.name} to {where}")


def decide(*, runtime, decision: NoticeDecision, flow_run_id: str | None = None, via: str = "ui") -> SendResult:
    """A person's decision from the `send-notice` form: approve and send, or reject."""
    policy = load_runtime_policy(runtime)
    with runtime.session() as db_session:
        if decision.decision == "reject":
            row = notices.reject(db_session=db_session, notice_id=decision.notice_id, by=decision.by,
                                 reason=decision.reason, policy=policy, contacts=runtime.contacts, via=via,
                                 flow_run_id=flow_run_id)
            return SendResult(notice=notices.describe(row), status="rejected",
                              message=f"notice {row.id} v{row.version} rejected by {decision.by}: {row.reason}")
        row = notices.find_notice(db_session=db_session, ref=decision.notice_id)
        if row.status != NoticeStatus.SENT.value:
            # The same form submitted twice: the second finds it sent and sends nothing.
            row = notices.approve(db_session=db_session, notice_id=row.id, by=decision.by,
                                  reason=decision.reason, policy=policy, contacts=runtime.contacts, via=via,
                                  flow_run_id=flow_run_id)
        notice_id = row.id
    return send_notice(runtime=runtime, notice_id=notice_id, by=decision.by, flow_run_id=flow_run_id)


def _is_drill(db_session, incident_id: str) -> bool:
    from ledgerguard.register import service as register

    return bool(register.get_incident(db_session=db_session, incident_id=incident_id).drill)
