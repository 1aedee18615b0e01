"""Client expense-claim requests (报账请求) and their source documents.

A request is the intake form's payload, one JSON file per request in ``claims/requests/``
(``data_files.claims_requests``)::

    {"request_id": "R20260629-D", "client_id": "C0004", "requested_at": "2026-06-29T17:00:00+08:00",
     "urgent": true, "requested_by": "客户财务", "channel": "wecom", "status": "open",
     "claims": [{"claim_id": "1", "amount_yuan": 356.0, "category": "差旅费", "description": "…",
                 "invoice_no": "26442000000012345678", "date": "2026-06-12",
                 "documents": ["R20260629-D/1-invoice.json"]}, …]}

Document paths are relative to ``claims/documents/`` (``data_files.claims_documents``). An
e-invoice (全电发票) exported as ``.json`` (``invoice_no``, ``amount_yuan``, …) is checked against
the claim; other documents (PDF, photos) are checked for presence only.

A claim is *supported* when it names an invoice number, lists at least one document, every
listed document exists, and an e-invoice document matches its invoice number and amount.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledgerguard.agency.models import AgencyDataError

__all__ = ["Claim", "ClaimCheck", "ClaimRequest", "REASONS", "check_request", "documents_dir", "letters_dir",
           "list_requests", "load_request", "request_id_from_resource", "request_path", "requests_dir", "trail_path"]

REQUESTS = ("claims_requests", "claims/requests")
DOCUMENTS = ("claims_documents", "claims/documents")
LETTERS = ("claims_letters", "claims/letters")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")

REASONS = {
    "no_invoice": {"zh": "未提供发票（无发票号码），不得作为合规的税前扣除凭证入账",
                   "en": "no invoice (no invoice number): not a valid pre-tax deduction voucher"},
    "document_missing": {"zh": "所列原始凭证文件缺失，无法审核", "en": "the listed source document is missing and cannot be checked"},
    "amount_mismatch": {"zh": "报销金额与发票金额不一致", "en": "the claimed amount differs from the invoice amount"},
    "invoice_mismatch": {"zh": "发票号码与所附电子发票不一致", "en": "the invoice number differs from the attached e-invoice"},
}


class Claim(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    claim_id: str = Field(min_length=1, max_length=40)
    amount_yuan: float = Field(gt=0)
    category: str = Field(min_length=1)
    description: str = ""
    invoice_no: str = ""
    spent_on: date | None = Field(default=None, alias="date")
    documents: list[str] = Field(default_factory=list)

    @field_validator("invoice_no", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return "" if value is None else str(value).strip()


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request_id: str = Field(pattern=_ID_RE.pattern)
    client_id: str = Field(pattern=r"^C\d{4,}$")
    requested_at: datetime
    urgent: bool = False
    requested_by: str = ""
    channel: str = "form"
    status: Literal["open", "booked", "closed"] = "open"
    claims: list[Claim] = Field(min_length=1)

    @field_validator("requested_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("requested_at needs a UTC offset (e.g. +08:00)")
        return value


@dataclass
class ClaimCheck:
    claim_id: str
    amount_yuan: float
    category: str
    invoice_no: str
    supported: bool
    reason: str | None                # a key of REASONS
    document_checked: str | None      # path relative to the documents folder
    document_sha256: str | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def requests_dir(agency: Any) -> Path:
    return agency.data_file(*REQUESTS)


def documents_dir(agency: Any) -> Path:
    return agency.data_file(*DOCUMENTS)


def letters_dir(agency: Any) -> Path:
    return agency.data_file(*LETTERS)


def request_id_from_resource(resource: str) -> str:
    head, sep, value = resource.partition(":")
    if head != "claim" or not sep or not _ID_RE.match(value):
        raise ValueError(f"resource {resource!r} is not of the form claim:<request_id>")
    return value


QUEUE = ("claims_queue", "claims/queue.csv")
QUEUE_COLUMNS = ["request_id", "client_id", "priority", "received_at", "due_at", "status", "updated_at", "note"]


def queue_path(agency: Any) -> Path:
    """The claims work queue (CSV, most pressing first)."""
    return agency.data_file(*QUEUE)


def request_path(agency: Any, request_id: str) -> Path:
    return requests_dir(agency) / f"{request_id}.json"


def trail_path(agency: Any, request_id: str) -> Path:
    return requests_dir(agency) / f"{request_id}.trail.json"


def load_request(agency: Any, request_id: str) -> tuple[Path, ClaimRequest]:
    path = request_path(agency, request_id)
    if not path.is_file():
        raise AgencyDataError(path, f"claim request {request_id!r} not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AgencyDataError(path, f"not valid JSON: {exc}") from None
    try:
        req = ClaimRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise AgencyDataError(path, f"{first.get('msg')}{more}", field=field) from None
    if req.request_id != request_id:
        raise AgencyDataError(path, f"request_id {req.request_id!r} does not match the file name", field="request_id")
    if not agency.has_client(req.client_id):
        raise AgencyDataError(path, f"unknown client {req.client_id!r} (not in {agency.clients_path.name})",
                              field="client_id")
    ids = [c.claim_id for c in req.claims]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise AgencyDataError(path, f"claim ids listed twice: {', '.join(dup)}", field="claims")
    return path, req


def list_requests(agency: Any) -> list[str]:
    folder = requests_dir(agency)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if not p.name.endswith(".trail.json"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _resolve(agency: Any, req_path: Path, rel: str, index: int) -> Path:
    base = documents_dir(agency).resolve()
    target = (base / rel).resolve()
    if base not in target.parents:
        raise AgencyDataError(req_path, f"document path {rel!r} leaves {base}", field=f"claims.{index}.documents")
    return target


def check_request(agency: Any, req_path: Path, req: ClaimRequest) -> list[ClaimCheck]:
    """Check every claim of the request against its documents."""
    out: list[ClaimCheck] = []
    for i, c in enumerate(req.claims):
        def result(ok: bool, reason: str | None, doc: str | None = None, digest: str | None = None,
                   detail: str = "") -> ClaimCheck:
            return ClaimCheck(c.claim_id, round(c.amount_yuan, 2), c.category, c.invoice_no, ok, reason, doc, digest, detail)

        paths = [(rel, _resolve(agency, req_path, rel, i)) for rel in c.documents]
        if not c.invoice_no:
            out.append(result(False, "no_invoice", paths[0][0] if paths else None,
                              sha256(paths[0][1]) if paths and paths[0][1].is_file() else None))
            continue
        if not paths:
            out.append(result(False, "document_missing", None, None, "no document listed"))
            continue
        missing = [rel for rel, p in paths if not p.is_file()]
        if missing:
            out.append(result(False, "document_missing", missing[0], None, f"not found: {', '.join(missing)}"))
            continue
        verdict = result(True, None, paths[0][0], sha256(paths[0][1]))
        for rel, p in paths:
            if p.suffix.lower() != ".json":
                continue
            try:
                doc = json.loads(p.read_text(encoding="utf-8"))
                doc_no, doc_amount = str(doc["invoice_no"]).strip(), float(doc["amount_yuan"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise AgencyDataError(p, f"not an e-invoice export (invoice_no, amount_yuan): {exc}") from None
            digest = sha256(p)
            if doc_no != c.invoice_no:
                verdict = result(False, "invoice_mismatch", rel, digest, f"document has {doc_no}")
            elif abs(doc_amount - c.amount_yuan) > 0.005:
                verdict = result(False, "amount_mismatch", rel, digest,
                                 f"claimed {c.amount_yuan:.2f}, invoice {doc_amount:.2f}")
            else:
                verdict = result(True, None, rel, digest)
            break
        out.append(verdict)
    return out


def read_trail(agency: Any, request_id: str) -> dict[str, Any] | None:
    path = trail_path(agency, request_id)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AgencyDataError(path, f"not valid JSON: {exc}") from None
