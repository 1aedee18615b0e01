"""Vendors: the vendor register, vendor breach notices and the threat-intel feed.

Files (relative to the agency folder; ``data_files:`` in agency.yaml may move them):

``vendors/vendors.yaml`` (``vendor_register``): ``vendors:`` a list of
    ``{id, name, service, domains: [...], data_processed: [name, id_number, bank_card, salary, phone, …],
    data_subjects: employees|contacts|none, clients: all | [C0001, …], credentials: true|false,
    contacts: [{name, email, phone}]}``
``vendors/notices/*.json`` (``vendor_notices``): one notice per file, entered by a person or an intake
    signal: ``{vendor_id, received_at, title, incident_at, status: confirmed|suspected,
    data_kinds: [...], clients: [...] (optional: the vendor's list of our clients), persons_affected
    (across the vendor's incident), scope_confirmed, credentials_exposed, summary, source}``
``vendors/threat-intel.jsonl`` (``threat_intel``): ``{at, source, type: breach|credential_leak|
    phishing|malware, domains: [...], title, data_kinds: [...]}`` one a line.
``vendors/client-domains.csv`` (``client_domains``): ``client_id,domain`` (clients' mail/web domains).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledgerguard.agency.models import AgencyDataError, validation_error
from ledgerguard.sources import jsonl_objects

REGISTER_FILE = ("vendor_register", "vendors/vendors.yaml")
NOTICES_DIR = ("vendor_notices", "vendors/notices")
FEED_FILE = ("threat_intel", "vendors/threat-intel.jsonl")
CLIENT_DOMAINS_FILE = ("client_domains", "vendors/client-domains.csv")

# Kinds of personal information (the rubric's pii_kinds vocabulary); other data kinds (ledgers,
# invoices, credentials) are business data.
PII_KINDS = {"name", "id_number", "bank_card", "salary", "phone", "address", "email", "social_insurance",
             "tax_records", "biometric"}


class VendorContact(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    email: str = ""
    phone: str = ""


class Vendor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    service: str = ""
    domains: list[str] = Field(default_factory=list)
    data_processed: list[str] = Field(default_factory=list)
    data_subjects: Literal["employees", "contacts", "none"] = "none"
    clients: Literal["all"] | list[str] = "all"
    credentials: bool = False
    contacts: list[VendorContact] = Field(default_factory=list)

    @field_validator("domains")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().lstrip(".") for d in value if d.strip()]

    def client_ids(self, agency) -> list[str]:
        return list(agency.client_ids) if self.clients == "all" else list(self.clients)

    @property
    def pii_kinds(self) -> list[str]:
        return [k for k in self.data_processed if k in PII_KINDS]


def register_path(agency) -> Path:
    return agency.data_file(*REGISTER_FILE)


def load_vendors(agency) -> dict[str, Vendor]:
    path = register_path(agency)
    if not path.is_file():
        raise AgencyDataError(path, "file not found (the vendor register)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AgencyDataError(path, f"not valid YAML: {exc}") from None
    items = raw.get("vendors") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise AgencyDataError(path, "expected vendors: a list", field="vendors")
    out: dict[str, Vendor] = {}
    for i, item in enumerate(items):
        try:
            v = Vendor.model_validate(item)
        except ValidationError as exc:
            err = validation_error(path, exc)
            raise AgencyDataError(path, f"vendors[{i}]: {str(err).split(': ', 1)[-1]}",
                                  field=f"vendors.{i}.{err.field}" if err.field else f"vendors.{i}") from None
        if v.id in out:
            raise AgencyDataError(path, f"vendors[{i}]: duplicate vendor id {v.id!r}", field=f"vendors.{i}.id")
        if v.clients != "all":
            unknown = [c for c in v.clients if not agency.has_client(c)]
            if unknown:
                raise AgencyDataError(path, f"vendors[{i}] ({v.id}): unknown client(s) {', '.join(unknown[:5])}",
                                      field=f"vendors.{i}.clients")
        out[v.id] = v
    return out


def vendor(agency, vendor_id: str) -> Vendor:
    vendors = load_vendors(agency)
    if vendor_id not in vendors:
        raise AgencyDataError(register_path(agency), f"unknown vendor {vendor_id!r}; vendors: "
                                                     f"{', '.join(vendors) or 'none'}", field="vendors")
    return vendors[vendor_id]


class Notice(BaseModel):
    vendor_id: str
    received_at: pd.Timestamp
    title: str = ""
    incident_at: pd.Timestamp | None = None
    status: Literal["confirmed", "suspected"] = "suspected"
    data_kinds: list[str] = Field(default_factory=list)
    clients: list[str] | None = None
    persons_affected: int | None = Field(default=None, ge=0)
    scope_confirmed: bool = False
    credentials_exposed: bool = False
    summary: str = ""
    source: str = "manual"

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    @field_validator("received_at", "incident_at", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        ts = pd.Timestamp(value)
        if ts.tzinfo is None:
            raise ValueError(f"{value!r} needs a time zone")
        return ts.tz_convert("UTC")


def notices_dir(agency) -> Path:
    return agency.data_file(*NOTICES_DIR)


def read_notices(agency) -> list[tuple[Path, Notice]]:
    """Every notice file, validated (bad file → AgencyDataError naming it and the field)."""
    folder = notices_dir(agency)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise AgencyDataError(path, f"line {exc.lineno}: not valid JSON: {exc.msg}") from None
        try:
            out.append((path, Notice.model_validate(raw)))
        except ValidationError as exc:
            raise validation_error(path, exc) from None
    return out


def write_notice(agency, name: str, notice: dict[str, Any]) -> Path:
    folder = notices_dir(agency)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(notice, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def feed_path(agency) -> Path:
    return agency.data_file(*FEED_FILE)


def read_feed(agency) -> list[dict[str, Any]]:
    path = feed_path(agency)
    out = []
    for n, obj in jsonl_objects(path, "the threat-intel feed"):
        try:
            at = pd.Timestamp(obj.get("at"))
        except (ValueError, TypeError):
            at = None
        if at is None or pd.isna(at) or at.tzinfo is None:
            raise AgencyDataError(path, f"line {n}: {obj.get('at')!r} is not an ISO timestamp with a time zone",
                                  field="at")
        domains = obj.get("domains") or ([obj["domain"]] if obj.get("domain") else [])
        if not isinstance(domains, list) or not domains:
            raise AgencyDataError(path, f"line {n}: domains missing", field="domains")
        out.append({**obj, "at": at.tz_convert("UTC"), "domains": [str(d).lower() for d in domains], "line": n})
    return out


def append_feed(agency, entries: list[dict[str, Any]]) -> None:
    path = feed_path(agency)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for e in entries:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")


def read_client_domains(agency) -> dict[str, str]:
    """domain → client_id (empty when the agency keeps no such file)."""
    path = agency.data_file(*CLIENT_DOMAINS_FILE)
    if not path.is_file():
        return {}
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    for col in ("client_id", "domain"):
        if col not in df.columns:
            raise AgencyDataError(path, "required column missing", field=col)
    out = {}
    for i, r in enumerate(df.itertuples(index=False), start=2):
        if not agency.has_client(r.client_id):
            raise AgencyDataError(path, f"line {i}: unknown client {r.client_id!r}", field="client_id")
        out[r.domain.strip().lower()] = r.client_id
    return out


def domain_matches(domain: str, wanted: str) -> bool:
    domain, wanted = domain.lower().rstrip("."), wanted.lower().rstrip(".")
    return domain == wanted or domain.endswith("." + wanted)
