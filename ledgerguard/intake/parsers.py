"""Sender payloads → :class:`RawSignal` (one per alert), validated by the models in ``models.py``.

Each parser raises ``pydantic.ValidationError`` for a payload that does not fit; the app turns it
into a 4xx naming the field.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from ledgerguard.intake.models import (
    AlertmanagerAlert,
    AlertmanagerWebhook,
    GenericSignal,
    GrafanaWebhook,
    PagerDutyChange,
    PagerDutyEvent,
    RawSignal,
)

TRUE = ("true", "1", "yes", "y", "on")


def labels_fingerprint(labels: dict[str, str]) -> str:
    """A stable identity for an alert that carries no fingerprint: sha256 of its sorted labels."""
    text = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _sane(value: datetime | None) -> datetime | None:
    """Alertmanager sends 0001-01-01T00:00:00Z for 'not set'."""
    return value if value is not None and value.year > 1970 else None


def _drill(labels: dict[str, str]) -> bool:
    return (labels.get("ledgerguard_drill") or labels.get("drill") or "").strip().lower() in TRUE


def _alerts(source: str, alerts: list[AlertmanagerAlert], common: dict[str, str]) -> list[RawSignal]:
    out = []
    for alert in alerts:
        labels = {**common, **alert.labels}
        resolved = alert.status == "resolved"
        details: dict[str, Any] = {"generatorURL": alert.generatorURL} if alert.generatorURL else {}
        for extra in ("dashboardURL", "panelURL", "silenceURL", "valueString"):
            if getattr(alert, extra, ""):
                details[extra] = getattr(alert, extra)
        out.append(RawSignal(
            source=source, action="resolve" if resolved else "firing", labels=labels,
            annotations=dict(alert.annotations),
            observed_at=_sane(alert.endsAt) if resolved else _sane(alert.startsAt),
            fingerprint=alert.fingerprint or labels_fingerprint(labels), drill=_drill(labels), details=details,
        ))
    return out


def parse_alertmanager(data: Any) -> list[RawSignal]:
    """Prometheus Alertmanager webhook, version 4: one signal per alert."""
    hook = AlertmanagerWebhook.model_validate(data)
    signals = _alerts("alertmanager", hook.alerts, {})
    for s in signals:
        s.details.update({"receiver": hook.receiver, "groupKey": hook.groupKey, "externalURL": hook.externalURL})
    return signals


def parse_grafana(data: Any) -> list[RawSignal]:
    """Grafana unified alerting webhook: the Alertmanager alert list plus title/state/message."""
    hook = GrafanaWebhook.model_validate(data)
    signals = _alerts("grafana", hook.alerts, {})
    for s in signals:
        s.details.update({"receiver": hook.receiver, "orgId": hook.orgId, "title": hook.title,
                          "externalURL": hook.externalURL})
        if not s.annotations.get("summary") and hook.title:
            s.summary = hook.title
    return signals


def _scalars(details: Any) -> dict[str, str]:
    if not isinstance(details, dict):
        return {}
    return {str(k): str(v) for k, v in details.items() if isinstance(v, (str, int, float, bool))}


def parse_pagerduty_event(data: Any) -> tuple[PagerDutyEvent, RawSignal]:
    """PagerDuty Events API v2 ``/v2/enqueue``. A trigger without ``dedup_key`` gets one."""
    event = PagerDutyEvent.model_validate(data)
    action = {"trigger": "firing", "acknowledge": "acknowledge", "resolve": "resolve"}[event.event_action]
    if action == "firing" and event.payload is None:
        from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

        raise ValidationError.from_exception_data("PagerDutyEvent", [InitErrorDetails(
            type=PydanticCustomError("missing", "is required for a trigger event"),
            loc=("payload",), input=data)])
    if action != "firing" and not event.dedup_key:
        from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

        raise ValidationError.from_exception_data("PagerDutyEvent", [InitErrorDetails(
            type=PydanticCustomError("missing", "is required for acknowledge and resolve events"),
            loc=("dedup_key",), input=data)])
    dedup_key = event.dedup_key or uuid.uuid4().hex
    labels: dict[str, str] = {}
    summary, observed = "", None
    if event.payload is not None:
        p = event.payload
        labels = _scalars(p.custom_details)
        labels.update({k: v for k, v in {"source": p.source, "severity": p.severity, "component": p.component,
                                         "group": p.group, "class": p.class_}.items() if v})
        summary, observed = p.summary, p.timestamp
    raw = RawSignal(source="pagerduty", action=action, labels=labels, summary=summary, observed_at=observed,
                    fingerprint=dedup_key, dedup_key=dedup_key, drill=_drill(labels),
                    details={"client": event.client, "client_url": event.client_url, "links": event.links,
                             "images": event.images})
    return event, raw


def parse_pagerduty_change(data: Any) -> RawSignal:
    """PagerDuty ``/v2/change/enqueue``: a change event (joins timelines later, opens nothing)."""
    change = PagerDutyChange.model_validate(data)
    p = change.payload
    labels = _scalars(p.custom_details)
    if p.source:
        labels["source"] = p.source
    return RawSignal(source="pagerduty", action="change", labels=labels, summary=p.summary,
                     observed_at=p.timestamp, fingerprint=None, drill=_drill(labels),
                     details={"links": change.links, "custom_details": p.custom_details})


def parse_generic(data: Any) -> RawSignal:
    """LedgerGuard's generic signal (``POST /api/v1/signals``)."""
    sig = GenericSignal.model_validate(data)
    if sig.dedup_key:
        fingerprint = sig.dedup_key
    elif sig.emergency_type and sig.resource:
        fingerprint = f"{sig.emergency_type}:{sig.resource}"
    else:
        fingerprint = labels_fingerprint(sig.labels)
    return RawSignal(source="generic", action="resolve" if sig.status == "resolved" else "firing",
                     labels=dict(sig.labels), summary=sig.summary, observed_at=sig.observed_at,
                     fingerprint=fingerprint, dedup_key=sig.dedup_key, emergency_type=sig.emergency_type,
                     resource=sig.resource, drill=sig.drill)
