"""One-click acknowledgement links: signed, bound to one recipient and one incident, expiring,
single use.

A link is ``<base>/ack/<id>.<signature>``. The register row (``ack_links``) holds what the link
is bound to; the signature is HMAC-SHA256 over the id, the incident, the person and the expiry
with the agency's link key, so neither a guessed id nor an edited row redeems a link. Spending a
link is an UPDATE guarded by ``used_at IS NULL``: two clicks, even on two intake processes,
acknowledge once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session

from ledgerguard.register.models import AckLink, Incident, as_utc, new_id, utcnow

__all__ = ["LinkRefused", "Redeemed", "issue_link", "link_key", "redeem_link", "peek_link"]

KEY_FILE = "secrets/ack-link.key"


class LinkRefused(ValueError):
    """The link cannot acknowledge: ``reason`` is unknown, forged, expired, used or closed."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Redeemed:
    incident_id: str
    person_id: str
    link_id: str


def link_key(settings) -> bytes:
    """The signing key: ``LEDGERGUARD_ACK_LINK_KEY`` (every machine of a scale-out set shares it),
    else a random key kept in ``<home>/secrets/ack-link.key`` (created once, mode 0600)."""
    configured = getattr(settings, "ack_link_key", None)
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value().encode("utf-8")
    path = Path(settings.home) / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a private name, then linked into place: a second process either
        # wins with its own complete key or reads the first one's, never a half-written file.
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise ValueError(f"{path}: the acknowledgement link key is missing or too short; delete the file "
                         "to make a new one (links already sent stop working)")
    return key.encode("ascii")


def _signature(key: bytes, *, link_id: str, incident_id: str, person_id: str, expires_at: datetime) -> str:
    body = "|".join([link_id, incident_id, person_id, str(int(as_utc(expires_at).timestamp()))])
    digest = hmac.new(key, body.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def issue_link(*, db_session: Session, key: bytes, base_url: str, incident_id: str, person_id: str,
               recipient: str, ttl: timedelta, now: datetime | None = None) -> str:
    """Store a new link for ``person_id`` on ``incident_id`` and return its URL."""
    now = as_utc(now) if now else utcnow()
    row = AckLink(id=new_id(), incident_id=incident_id, person_id=person_id, recipient=recipient,
                  created_at=now, expires_at=now + ttl)
    db_session.add(row)
    db_session.flush()
    token = f"{row.id}.{_signature(key, link_id=row.id, incident_id=incident_id, person_id=person_id, expires_at=row.expires_at)}"
    return f"{base_url.rstrip('/')}/ack/{token}"


def _checked(db_session: Session, key: bytes, token: str, now: datetime) -> AckLink:
    link_id, _, signature = (token or "").partition(".")
    row = db_session.get(AckLink, link_id) if link_id and signature else None
    if row is None:
        raise LinkRefused("unknown", "this acknowledgement link is not known")
    expected = _signature(key, link_id=row.id, incident_id=row.incident_id, person_id=row.person_id,
                          expires_at=row.expires_at)
    if not hmac.compare_digest(expected, signature):
        raise LinkRefused("forged", "this acknowledgement link's signature does not match")
    if row.used_at is not None:
        raise LinkRefused("used", f"this link was already used at {row.used_at.isoformat(timespec='seconds')}")
    if row.expires_at <= now:
        raise LinkRefused("expired", f"this link expired at {row.expires_at.isoformat(timespec='seconds')}")
    return row


def peek_link(*, db_session: Session, key: bytes, token: str, now: datetime | None = None) -> AckLink:
    """The link's row if it could be redeemed now (for the confirmation page); never spends it."""
    row = _checked(db_session, key, token, as_utc(now) if now else utcnow())
    _require_open(db_session, row)
    return row


def _require_open(db_session: Session, row: AckLink) -> None:
    incident = db_session.get(Incident, row.incident_id)
    if incident is None or not incident.is_open:
        raise LinkRefused("closed", f"incident {row.incident_id} is no longer open")


def redeem_link(*, db_session: Session, key: bytes, token: str, remote: str | None = None,
                now: datetime | None = None) -> Redeemed:
    """Spend the link once; the caller then acknowledges ``incident_id`` as ``person_id`` via link."""
    now = as_utc(now) if now else utcnow()
    row = _checked(db_session, key, token, now)
    _require_open(db_session, row)
    spent = db_session.execute(update(AckLink).where(AckLink.id == row.id, AckLink.used_at.is_(None))
                               .values(used_at=now, used_from=(remote or "")[:64])).rowcount
    if spent != 1:
        raise LinkRefused("used", "this link was already used")
    return Redeemed(incident_id=row.incident_id, person_id=row.person_id, link_id=row.id)
