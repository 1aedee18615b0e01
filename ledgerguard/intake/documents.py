"""Documents entered through the intake: a client's urgent claim request with its documents, a
vendor's breach notice.

The body is validated against the data source's own model (``sources.claims.ClaimRequest``,
``sources.vendors.Notice``), checked against the agency (known client, known vendor), written
into the agency folder where the detectors read it, and then raised as a signal of its type,
exactly like an alert: the register keeps the request and the signal before the 202, and the
type's flow runs on the file. Sending the same document again changes nothing; a different
document under an id already used is refused (409) rather than overwriting evidence.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ledgerguard.intake.models import RawSignal
from ledgerguard.sources import claims as claims_source
from ledgerguard.sources import vendors as vendors_source

SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class DocumentRejected(ValueError):
    """The document cannot be stored: ``field`` and ``reason`` go back to the sender."""

    def __init__(self, status: int, field: str, reason: str):
        self.status, self.field, self.reason = status, field, reason
        super().__init__(f"{field}: {reason}")


class Attachment(BaseModel):
    """A document sent with the request (an e-invoice export, a scan), base64-encoded."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SAFE_NAME, description="file name, stored under claims/documents/<request_id>/")
    content_base64: str = Field(min_length=1)


class ClaimSubmission(claims_source.ClaimRequest):
    """A claim request as the client (or the form) sends it. Each claim's ``documents`` name
    attachments of this request (``<name>``) or files already under claims/documents/."""

    model_config = ConfigDict(extra="forbid")

    attachments: list[Attachment] = Field(default_factory=list)
    drill: bool = False


class NoticeSubmission(vendors_source.Notice):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    drill: bool = False


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _store_once(path: Path, data: bytes, field: str) -> None:
    """Write ``data`` at ``path`` unless the same bytes are there; other bytes there: 409."""
    if path.exists():
        if path.read_bytes() == data:
            return
        raise DocumentRejected(409, field, f"{path.name} already exists with other content; "
                                           f"use a new id instead of replacing evidence")
    _atomic_write(path, data)


# -- urgent claims ---------------------------------------------------------------------------------

def parse_claim(data: Any) -> RawSignal:
    sub = ClaimSubmission.model_validate(data)
    return RawSignal(source="claims", action="firing", labels={"request_id": sub.request_id,
                                                                "client_id": sub.client_id},
                     summary=f"{'urgent ' if sub.urgent else ''}claim request {sub.request_id} of {sub.client_id}: "
                             f"{len(sub.claims)} claim(s)",
                     observed_at=sub.requested_at, fingerprint=f"claim:{sub.request_id}",
                     dedup_key=f"urgent_claim:claim:{sub.request_id}", emergency_type="urgent_claim",
                     resource=f"claim:{sub.request_id}", drill=sub.drill)


def store_claim(data: Any, agency) -> None:
    sub = ClaimSubmission.model_validate(data)
    if not agency.has_client(sub.client_id):
        raise DocumentRejected(422, "client_id", f"unknown client {sub.client_id!r} (not in {agency.clients_path.name})")
    ids = [c.claim_id for c in sub.claims]
    if len(ids) != len(set(ids)):
        raise DocumentRejected(422, "claims", "claim ids must be unique within a request")
    folder = claims_source.documents_dir(agency) / sub.request_id
    attached = {}
    for i, item in enumerate(sub.attachments):
        try:
            attached[item.name] = base64.b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DocumentRejected(422, f"attachments.{i}.content_base64", f"not base64: {exc}") from None
    request = sub.model_dump(mode="json", exclude={"attachments", "drill"}, by_alias=True)
    for i, claim in enumerate(request["claims"]):
        # an attachment's name becomes its path under claims/documents/
        claim["documents"] = [f"{sub.request_id}/{d}" if d in attached else d for d in claim["documents"]]
        for d in claim["documents"]:
            target = (claims_source.documents_dir(agency) / d).resolve()
            if claims_source.documents_dir(agency).resolve() not in target.parents:
                raise DocumentRejected(422, f"claims.{i}.documents", f"{d!r} leaves the documents folder")
    for name, content in attached.items():
        _store_once(folder / name, content, "attachments")
    body = json.dumps(request, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
    _store_once(claims_source.request_path(agency, sub.request_id), body, "request_id")


# -- vendor breach notices -------------------------------------------------------------------------

def parse_vendor_notice(data: Any) -> RawSignal:
    notice = NoticeSubmission.model_validate(data)
    return RawSignal(source="vendor_notice", action="firing", labels={"vendor": notice.vendor_id},
                     summary=notice.title or notice.summary[:200] or f"breach notice from {notice.vendor_id}",
                     observed_at=notice.received_at.to_pydatetime(), fingerprint=f"vendor:{notice.vendor_id}",
                     emergency_type="vendor_breach", resource=f"vendor:{notice.vendor_id}", drill=notice.drill)


def notice_name(notice: NoticeSubmission) -> str:
    return f"{notice.vendor_id}-{notice.received_at.tz_convert('UTC'):%Y%m%dT%H%M%SZ}"


def store_vendor_notice(data: Any, agency) -> None:
    notice = NoticeSubmission.model_validate(data)
    if notice.vendor_id not in vendors_source.load_vendors(agency):
        raise DocumentRejected(422, "vendor_id", f"unknown vendor {notice.vendor_id!r} (not in the vendor register "
                                                 f"{vendors_source.register_path(agency).name})")
    body = notice.model_dump(mode="json", exclude={"drill"})
    for key in ("received_at", "incident_at"):
        if body.get(key) is not None:
            body[key] = getattr(notice, key).isoformat()
    body.setdefault("source", "intake")
    path = vendors_source.notices_dir(agency) / f"{notice_name(notice)}.json"
    _store_once(path, json.dumps(body, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8"), "received_at")


DOCUMENT_ENDPOINTS = {
    # path: (source, parse, store)
    "/api/v1/claims": ("claims", parse_claim, store_claim),
    "/api/v1/vendor-notices": ("vendor_notice", parse_vendor_notice, store_vendor_notice),
}
