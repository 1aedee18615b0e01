"""Signal → the typed request of its emergency flow, and Signal → the Prefect event that starts it.

Prefect-free: the intake writes these events into the register's outbox, a relay POSTs them to
Prefect's ``/api/events``, and each emergency deployment's trigger picks its own:

    expect:  ledgerguard.signal.firing
    match:   {"prefect.resource.id": "ledgerguard.signal.ledger_loss.*"}
    params:  {"request": "{{ event.payload.request }}"}

Sweep flows reuse the same two functions so a sweep finding and an alert travel the same path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from ledgerguard.models import Signal
from ledgerguard.response.models import TYPED_REQUESTS, BackupFailureRequest, LedgerLossRequest, RunOptions

__all__ = [
    "ACTIONS",
    "EVENT_NAMES",
    "REQUEST_BUILDERS",
    "RequestError",
    "event_for_signal",
    "event_resource_id",
    "request_for_signal",
    "safe_key",
]

ACTIONS = ("firing", "resolve", "acknowledge", "change")
EVENT_NAMES = {
    "firing": "ledgerguard.signal.firing",
    "resolve": "ledgerguard.signal.resolved",
    "change": "ledgerguard.signal.change",
}
"""Actions that become a Prefect event (an acknowledgement only changes the register)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_KEY = 160


class RequestError(ValueError):
    """The signal names a type whose flow exists, but no valid request can be built from it."""


def safe_key(value: str) -> str:
    """``value`` with every character outside ``[A-Za-z0-9_-]`` replaced by ``_`` (dots too: they
    separate the parts of a Prefect resource id, which triggers match with ``*``). Long values
    are cut and suffixed with a short hash so two long keys never collide."""
    cleaned = _UNSAFE.sub("_", value)
    if len(cleaned) > MAX_KEY:
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]
        cleaned = f"{cleaned[:MAX_KEY - 13]}_{digest}"
    return cleaned


def event_resource_id(emergency_type: str, dedup_key: str) -> str:
    return f"ledgerguard.signal.{safe_key(emergency_type)}.{safe_key(dedup_key)}"


def _resource_part(resource: str, prefix: str) -> str | None:
    return resource.split(":", 1)[1] if resource.startswith(prefix + ":") else None


def _options(signal: Signal, requested_by: str | None) -> dict[str, Any]:
    return {
        "source": signal.source[:100],
        "dedup_key": signal.dedup_key,
        "summary": signal.summary[:2000],
        "requested_by": requested_by or str(signal.payload.get("requested_by") or signal.source),
        "drill": signal.drill,
    }


def _ledger_loss(signal: Signal, requested_by: str | None) -> RunOptions:
    client_id = _resource_part(signal.resource, "ledger") or signal.labels.get("client_id")
    if not client_id:
        raise RequestError("ledger_loss needs a resource 'ledger:<client_id>' or a client_id label")
    return LedgerLossRequest(client_id=client_id, **_options(signal, requested_by))


def _backup_failure(signal: Signal, requested_by: str | None) -> RunOptions:
    target = _resource_part(signal.resource, "backups") or signal.labels.get("backup_target") or "nightly"
    return BackupFailureRequest(backup_target=target, **_options(signal, requested_by))


def _typed(model) -> Callable[[Signal, str | None], RunOptions]:
    """Builder for a `_TypedRequest`: its one field from ``<prefix>:<value>`` or a label of that name."""
    def build(signal: Signal, requested_by: str | None) -> RunOptions:
        value = _resource_part(signal.resource, model.resource_prefix) or signal.labels.get(model.resource_field)
        if not value:  # never fall back to the form's default: it would check something else
            raise RequestError(f"{model.emergency_type} needs a resource '{model.resource_prefix}:<"
                               f"{model.resource_field}>' or a {model.resource_field} label")
        return model(**{model.resource_field: value}, **_options(signal, requested_by))
    return build


REQUEST_BUILDERS: dict[str, Callable[[Signal, str | None], RunOptions]] = {
    "ledger_loss": _ledger_loss,
    "backup_failure": _backup_failure,
    **{emergency_type: _typed(model) for emergency_type, model in TYPED_REQUESTS.items()},
}
"""Emergency types whose flow is built, and how their typed request is made from a signal."""


def request_for_signal(signal: Signal, *, requested_by: str | None = None) -> RunOptions | None:
    """The typed flow request (LedgerLossRequest, BackupFailureRequest…) for ``signal``.

    None when the type's flow is not built yet. Raises :class:`RequestError` when the type has a
    flow but the signal cannot make a valid request (e.g. ``ledger:`` with an invalid client id).
    ``requested_by`` defaults to ``signal.payload["requested_by"]``, else the signal's source.
    """
    builder = REQUEST_BUILDERS.get(signal.emergency_type)
    if builder is None:
        return None
    try:
        return builder(signal, requested_by)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise RequestError(f"cannot build the {signal.emergency_type} request: {reasons}") from None


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def event_for_signal(
    signal: Signal,
    *,
    event_id: str,
    action: str,
    signal_id: str | None = None,
    requested_by: str | None = None,
    occurred: datetime | None = None,
    request: RunOptions | None | bool = True,
) -> dict[str, Any]:
    """The Prefect event body for ``signal`` (what ``POST /api/events`` takes, in a list).

    ``action`` is firing, resolve or change. ``occurred`` defaults to now (when LedgerGuard
    learnt of it; the sender's time is ``payload.observed_at``). ``request`` defaults to
    ``request_for_signal(signal)``; pass a request (or None) to use that instead.
    """
    if action not in EVENT_NAMES:
        raise ValueError(f"action {action!r} makes no event; one of {sorted(EVENT_NAMES)}")
    if request is True:
        request = request_for_signal(signal, requested_by=requested_by)
    return {
        "id": event_id,
        "occurred": _iso(occurred or datetime.now(timezone.utc)),
        "event": EVENT_NAMES[action],
        "resource": {
            "prefect.resource.id": event_resource_id(signal.emergency_type, signal.dedup_key),
            "prefect.resource.name": f"{signal.emergency_type} {signal.resource}"[:200],
            "ledgerguard.emergency_type": signal.emergency_type,
            "ledgerguard.dedup_key": signal.dedup_key,
            "ledgerguard.resource": signal.resource,
            "ledgerguard.source": signal.source,
            "ledgerguard.drill": "true" if signal.drill else "false",
        },
        "payload": {
            "signal_id": signal_id,
            "action": action,
            "emergency_type": signal.emergency_type,
            "resource": signal.resource,
            "dedup_key": signal.dedup_key,
            "source": signal.source,
            "summary": signal.summary,
            "labels": dict(signal.labels),
            "observed_at": _iso(signal.observed_at),
            "drill": signal.drill,
            "request": request.model_dump(mode="json") if request is not None else None,
        },
    }


def raise_sweep_signal(*, runtime, signal: Signal, requested_by: str) -> str:
    """Write a sweep finding to the register and the outbox through the intake's own path.

    Returns what happened: ``joined`` (the incident for this dedup key is still open: the
    signal is recorded on it and nothing fires, so a sweep every 15 minutes does not re-run the
    flow or page anyone again), else the status `register.accept_signal` reports (``queued``:
    a firing event waits in the outbox for the relay; ``coalesced``; ``suppressed``…).
    """
    from ledgerguard.register import service as register

    with runtime.session() as db_session:
        open_incident = register.find_open_incident(db_session=db_session, dedup_key=signal.dedup_key)
        if open_incident is not None:
            register.record_signal(db_session=db_session, signal=signal, incident_id=open_incident.id)
            return "joined"
        return register.accept_signal(db_session=db_session, signal=signal, actor=requested_by).status
