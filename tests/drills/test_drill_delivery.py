"""A drill incident's messages through the real send path: redirected to the drill mailbox over
real SMTP, once, and a message quiet hours held back is closed when its redirected copy goes."""

from __future__ import annotations

from datetime import timedelta


def test_a_deferred_drill_message_goes_to_the_drill_mailbox_once_and_its_row_is_closed(agency_dir, smtp_sink):
    from ledgerguard.channels.contacts import drill_recipients
    from ledgerguard.models import Signal, Stage, idempotency_key, utcnow
    from ledgerguard.register import service as register
    from ledgerguard.response.notifying import deliver_due, recipient_label, route
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    entry = runtime.catalog.get("ledger_loss")
    with runtime.session() as db_session:
        incident, _ = register.open_or_join_incident(
            db_session=db_session, title="drill", flow_name="ledger-loss",
            signal=Signal(source="drill", emergency_type="ledger_loss", resource="ledger:C0001",
                          dedup_key="drill:t:ledger_loss:ledger:C0001", drill=True))
        incident_id = incident.id
    person = route(runtime=runtime, entry=entry, level=4, affected_clients=[]).recipients[0]
    key = idempotency_key(incident_id=incident_id, stage=Stage.NOTIFY.value, recipient=recipient_label(person),
                          step="level4")
    with runtime.session() as db_session:  # quiet hours held it back under the person's own key
        register.defer_notification(db_session=db_session, key=key, incident_id=incident_id,
                                    stage=Stage.NOTIFY.value, recipient=recipient_label(person),
                                    channel=person.channel, step="level4", template="report",
                                    subject="s", due_at=utcnow() - timedelta(minutes=1))
    context = {"agency": {"name": "测试"}, "entry": {"name": "账套", "id": "ledger_loss"},
               "incident": None, "run": {"drill": True, "resource": "ledger:C0001", "clear_reasons": [],
                                         "flow_run_name": None, "flow_run_id": None, "requested_by": "t",
                                         "source": "drill"}}
    deliver_due(runtime=runtime, incident_id=incident_id, context=context, now=utcnow())
    deliver_due(runtime=runtime, incident_id=incident_id, context=context, now=utcnow())  # a later round

    mailbox = {r.address for r in drill_recipients(runtime.contacts)}
    mails = smtp_sink.messages()
    assert len(mails) == 1 and mails[0]["To"] in mailbox and "【演练】" in mails[0]["Subject"]
    with runtime.session() as db_session:
        assert register.get_notification(db_session=db_session, key=key).status == "sent"
