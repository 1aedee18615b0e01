"""Notify: route by level → roles → people → channels, and send each message exactly once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ledgerguard.models import Stage, idempotency_key


@dataclass
class SendOutcome:
    recipient: str
    channel: str
    status: str  # sent | skipped (already sent before) | failed
    error: str | None = None


def recipient_label(recipient) -> str:
    """Stable identity of one delivery target: the person and the contact point used."""
    return f"{recipient.person_id}:{recipient.channel}:{recipient.address}"


def route(*, runtime, entry, level: int, affected_clients: list[str], at=None, roles=None):
    """People to notify for this level (or for ``roles``, e.g. an escalation step's): for a role
    on a rotation the person on call at ``at`` (now), for other roles everyone who holds them;
    and each affected client's own accountant."""
    from ledgerguard.channels.contacts import resolve_recipients

    roles = list(roles) if roles is not None else entry.roles_for(level)
    accountants: list[str] = []
    if "client_accountant" in roles:
        for client_id in affected_clients:
            try:
                accountants.append(str(runtime.agency.client(client_id)["accountant_id"]))
            except Exception:  # noqa: BLE001 — an unknown client shows up as an unresolved role
                continue
    return resolve_recipients(contacts=runtime.contacts, roles=list(roles),
                              extra_people={"client_accountant": accountants},
                              on_call=on_call_now(runtime=runtime, roles=list(roles), at=at))


def on_call_now(*, runtime, roles: list[str], at=None) -> dict[str, str]:
    """For each role on a rotation in the agency's roster, the person on call at ``at`` (now)."""
    from ledgerguard.models import utcnow
    from ledgerguard.oncall.service import on_call_id

    roster = runtime.roster
    if roster is None:
        return {}
    at = at or utcnow()
    return {role: on_call_id(roster=roster, role=role, at=at) for role in roles if role in roster.rotations}


def send_once(
    *,
    runtime,
    incident_id: str | None,
    stage: Stage | str,
    step: str,
    recipient,
    message,
    template: str,
    attachments: list[Path] | None = None,
    flow_run_id: str | None = None,
    personalise: Callable[[object], object] | None = None,
) -> SendOutcome:
    """Deliver one message unless the register says this exact delivery already succeeded.

    The idempotency key is (incident, stage, recipient, step): a retried task or a re-run flow
    computes the same key and finds the row already `sent`. A failed delivery stays in the
    register as `failed` with its error and is claimed again by the next attempt.
    ``personalise(recipient)`` renders the recipient's own copy (their acknowledgement link)
    once the delivery is claimed, so a delivery that is skipped issues no link.
    A drill incident's message goes to :func:`drill_targets` instead.
    """
    from ledgerguard.register import service as register

    if incident_id:
        with runtime.session(read_only=True) as db_session:
            drill = bool(register.get_incident(db_session=db_session, incident_id=incident_id).drill)
        if drill:
            return _send_drill(runtime=runtime, incident_id=incident_id, stage=stage, step=step, recipient=recipient,
                               message=message, template=template, attachments=attachments,
                               flow_run_id=flow_run_id, personalise=personalise)
    return _send(runtime=runtime, incident_id=incident_id, stage=stage, step=step, recipient=recipient,
                 message=message, template=template, attachments=attachments, flow_run_id=flow_run_id,
                 personalise=personalise)


def drill_targets(*, contacts, recipient) -> list:
    """Where a drill incident's message to ``recipient`` goes: the agency's drill recipients when
    it lists any (each keeps the person it was meant for, so acknowledgement links still name
    them); otherwise the staff member themself, as a drill participant. A client is never a drill
    participant: without drill recipients a client's message is not sent at all."""
    from dataclasses import replace

    from ledgerguard.channels.contacts import drill_recipients

    mailbox = drill_recipients(contacts)
    if mailbox:
        return [replace(recipient, channel=target.channel, address=target.address) for target in mailbox]
    return [] if recipient.role == "client" else [recipient]


def _send_drill(*, runtime, incident_id, stage, step, recipient, message, template, attachments, flow_run_id,
                personalise) -> SendOutcome:
    from ledgerguard.register import service as register

    targets = drill_targets(contacts=runtime.contacts, recipient=recipient)
    if not targets:
        with runtime.session() as db_session:
            register.append_timeline(
                db_session=db_session, incident_id=incident_id, stage=stage.value if isinstance(stage, Stage)
                else str(stage), kind="notification.suppressed", flow_run_id=flow_run_id,
                message=f"drill: {template} for client {recipient.name} not sent (no drill recipients listed)",
                data={"recipient": recipient.person_id, "step": step})
        return SendOutcome(recipient=recipient_label(recipient), channel=recipient.channel, status="skipped")
    outcomes = [_send(runtime=runtime, incident_id=incident_id, stage=stage, step=step, recipient=target,
                      message=message, template=template, attachments=attachments, flow_run_id=flow_run_id,
                      personalise=personalise) for target in targets]
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed and any(recipient_label(t) != recipient_label(recipient) for t in targets):
        # Quiet hours deferred this message under the person's own key; its redirected copies are
        # out now, so that row is done too (else it would wait as "deferred" for ever).
        stage_name = stage.value if isinstance(stage, Stage) else str(stage)
        key = idempotency_key(incident_id=incident_id, stage=stage_name, recipient=recipient_label(recipient),
                              step=step)
        with runtime.session() as db_session:
            row = register.get_notification(db_session=db_session, key=key, lock=True)
            if row is not None and row.status == "deferred":
                register.mark_notification_sent(db_session=db_session, key=key)
    status = "failed" if failed else ("skipped" if all(o.status == "skipped" for o in outcomes) else "sent")
    return SendOutcome(recipient=recipient_label(recipient), channel=recipient.channel, status=status,
                       error="; ".join(o.error or "" for o in failed) or None)


def _send(*, runtime, incident_id, stage, step, recipient, message, template, attachments, flow_run_id,
          personalise) -> SendOutcome:
    from ledgerguard.channels.service import deliver
    from ledgerguard.register import service as register

    stage_name = stage.value if isinstance(stage, Stage) else str(stage)
    label = recipient_label(recipient)
    key = idempotency_key(incident_id=incident_id or "-", stage=stage_name, recipient=label, step=step)
    with runtime.session() as db_session:
        row = register.claim_notification(
            db_session=db_session, key=key, incident_id=incident_id, stage=stage_name,
            recipient=label, channel=recipient.channel, step=step, template=template,
            subject=message.subject, flow_run_id=flow_run_id,
        )
    if row is None:
        return SendOutcome(recipient=label, channel=recipient.channel, status="skipped")
    if personalise is not None:
        message = personalise(recipient)

    result = deliver(recipient=recipient, message=message, attachments=list(attachments or []),
                     settings=runtime.settings)
    with runtime.session() as db_session:
        if result.ok:
            register.mark_notification_sent(db_session=db_session, key=key)
        else:
            register.mark_notification_failed(db_session=db_session, key=key,
                                              error=result.error or "delivery failed")
        if incident_id:
            register.append_timeline(
                db_session=db_session, incident_id=incident_id, stage=stage_name,
                kind="notification.sent" if result.ok else "notification.failed",
                message=(f"{template} → {recipient.name} ({recipient.channel})"
                         + ("" if result.ok else f": {result.error}")),
                data={"recipient": recipient.person_id, "channel": recipient.channel,
                      "step": step, "key": key},
                flow_run_id=flow_run_id,
            )
    return SendOutcome(recipient=label, channel=recipient.channel,
                       status="sent" if result.ok else "failed", error=result.error)


def redeliver_failed(*, runtime, entry, incident_id: str, context: dict, flow_run_id: str | None = None,
                     stages: tuple[str, ...] = (Stage.NOTIFY.value,)) -> list[SendOutcome]:
    """Send again every delivery of this incident that failed before, under its original key.

    The message is rendered anew from the incident as it stands now, so a late notification
    tells the current state rather than a stale one. Each row keeps its idempotency key, so a
    delivery that finally succeeds is never repeated.
    """
    from ledgerguard.models import DeliveryStatus
    from ledgerguard.register import service as register

    with runtime.session() as db_session:
        rows = [n for n in register.list_notifications(db_session=db_session, incident_id=incident_id,
                                                        status=DeliveryStatus.FAILED.value) if n.stage in stages]
        rows = [(n.stage, n.step, n.recipient, n.channel, n.template) for n in rows]
    return _send_rows(runtime=runtime, incident_id=incident_id, rows=rows, context=context, flow_run_id=flow_run_id)


def deliver_due(*, runtime, incident_id: str, context: dict, now, flow_run_id: str | None = None) -> list[SendOutcome]:
    """Send the incident's deferred notifications whose time has come (quiet hours are over),
    rendered from the incident as it stands now, each under its original key (never twice)."""
    from ledgerguard.register import service as register

    with runtime.session() as db_session:
        rows = [(n.stage, n.step, n.recipient, n.channel, n.template)
                for n in register.list_due_notifications(db_session=db_session, now=now, incident_id=incident_id)]
    return _send_rows(runtime=runtime, incident_id=incident_id, rows=rows, context=context, flow_run_id=flow_run_id)


def _send_rows(*, runtime, incident_id, rows, context, flow_run_id) -> list[SendOutcome]:
    from ledgerguard.channels.contacts import Recipient
    from ledgerguard.channels.messaging import render_message

    outcomes = []
    for stage, step, label, channel, template in rows:
        person_id, _, address = label.split(":", 2)  # the label recipient_label() wrote
        person = runtime.contacts.person(person_id)
        recipient = Recipient(person_id=person_id, name=person.name if person else person_id, role="",
                              channel=channel, address=address)
        message = render_message(name=template, language=runtime.settings.language, context=context,
                                 templates_dir=runtime.settings.templates_dir)
        outcomes.append(send_once(
            runtime=runtime, incident_id=incident_id, stage=stage, step=step, recipient=recipient, message=message,
            template=template, flow_run_id=flow_run_id,
            personalise=ack_personaliser(runtime=runtime, incident_id=incident_id, template=template, context=context)))
    return outcomes


def ack_personaliser(*, runtime, incident_id: str | None, template: str, context: dict) -> Callable[[object], object]:
    """Render ``template`` per recipient with their own one-click acknowledgement link.

    The link is bound to the recipient and the incident, expires after ``ack_link_hours`` and
    works once (``ledgerguard.acknowledgement.links``). Addresses that are not a person of
    contacts.yaml (the management list's plain addresses) and closed incidents get no link.
    """
    from ledgerguard.acknowledgement.links import issue_link, link_key
    from ledgerguard.channels.messaging import render_message
    from ledgerguard.register import service as register

    settings = runtime.settings

    def render(recipient):
        ack = dict(context.get("ack") or {})
        if incident_id and runtime.contacts.person(recipient.person_id) is not None:
            with runtime.session() as db_session:
                incident = register.get_incident(db_session=db_session, incident_id=incident_id)
                if incident.is_open:
                    ack["url"] = issue_link(db_session=db_session, key=link_key(settings), base_url=settings.link_base_url,
                                            incident_id=incident_id, person_id=recipient.person_id,
                                            recipient=recipient_label(recipient),
                                            ttl=timedelta(hours=settings.ack_link_hours))
                    ack["hours"] = settings.ack_link_hours
        return render_message(name=template, language=settings.language, context={**context, "ack": ack},
                              templates_dir=settings.templates_dir)

    return render
