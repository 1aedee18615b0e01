"""Notification channels: contacts and routing, message rendering, delivery through apprise,
and a local SMTP sink. Prefect-free."""

from ledgerguard.channels.contacts import (
    Contacts,
    ContactsError,
    Person,
    Recipient,
    Routing,
    channel_for_address,
    drill_recipients,
    load_contacts,
    management_recipients,
    resolve_recipients,
)
from ledgerguard.channels.messaging import MessageTemplateError, RenderedMessage, render_message
from ledgerguard.channels.service import DeliveryResult, deliver, email_url, mask_address
from ledgerguard.channels.smtp_sink import SmtpSink, run_sink_forever

__all__ = [
    "Contacts",
    "ContactsError",
    "DeliveryResult",
    "MessageTemplateError",
    "Person",
    "Recipient",
    "RenderedMessage",
    "Routing",
    "SmtpSink",
    "channel_for_address",
    "deliver",
    "drill_recipients",
    "email_url",
    "load_contacts",
    "management_recipients",
    "mask_address",
    "render_message",
    "resolve_recipients",
    "run_sink_forever",
]
