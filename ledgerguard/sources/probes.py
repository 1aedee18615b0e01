"""HTTP health probes: the agency's probe targets, live probes with httpx, and the probe log.

Files (relative to the agency folder; ``data_files:`` in agency.yaml may move them):

``probes/targets.yaml`` (``probe_targets``)
    ``default_portal: shanghai`` and ``targets:``, a list of::

        name: etax-shanghai-login     # unique
        kind: etax                    # etax | saas | internal
        url: https://…/login
        method: GET                   # GET | HEAD | POST
        timeout_s: 10
        expect_status: [200]          # an int or a list of ints
        interval_minutes: 5
        live: false                   # true: the detectors probe it now, not only read the log
        portal: shanghai              # etax targets: which provincial portal
        endpoint: login               # etax: login | filing | …
        service: bookkeeping          # saas targets: which service
        status_url: https://…/api/v2/status.json   # saas: Atlassian Statuspage status JSON
        role: primary                 # primary | control (a reference endpoint: "their outage or our network?")

``probes/probe-log.csv`` (``probe_log``), append-only: ``target,at,ok,status,elapsed_ms,error``.

``probe()`` never raises for a network failure: every outcome is a :class:`ProbeResult` row.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal

import httpx
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ledgerguard.agency.models import AgencyDataError, validation_error
from ledgerguard.masking import mask_text
from ledgerguard.sources import read_text_csv

__all__ = [
    "PROBE_LOG_COLUMNS", "ProbeResult", "ProbeTarget", "ProbeTargets", "FailureRun",
    "append_probe_results", "load_targets", "probe", "probe_log_path", "read_probe_log",
    "sweep", "targets_path", "trailing_failures", "write_probe_log",
]

TARGETS_FILE = ("probe_targets", "probes/targets.yaml")
PROBE_LOG_FILE = ("probe_log", "probes/probe-log.csv")
PROBE_LOG_COLUMNS = ["target", "at", "ok", "status", "elapsed_ms", "error"]


def targets_path(agency) -> Path:
    return agency.data_file(*TARGETS_FILE)


def probe_log_path(agency) -> Path:
    return agency.data_file(*PROBE_LOG_FILE)


# --------------------------------------------------------------------------- targets
class ProbeTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: Literal["etax", "saas", "internal"]
    url: str
    method: Literal["GET", "HEAD", "POST"] = "GET"
    timeout_s: float = Field(default=10, gt=0, le=300)
    expect_status: list[int] = Field(default_factory=lambda: [200])
    interval_minutes: float = Field(default=5, gt=0)
    live: bool = False
    portal: str | None = None
    endpoint: str | None = None
    service: str | None = None
    site: str | None = None
    status_url: str | None = None
    role: Literal["primary", "control"] = "primary"
    description: str = ""

    @field_validator("url", "status_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("expect_status", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kind_fields(self) -> "ProbeTarget":
        if self.kind == "etax" and not self.portal:
            raise ValueError("an etax target needs portal (the provincial e-tax bureau it probes)")
        if self.kind == "saas" and not self.service:
            raise ValueError("a saas target needs service (the SaaS it probes)")
        return self


@dataclass
class ProbeTargets:
    path: Path
    targets: list[ProbeTarget]
    default_portal: str | None = None
    default_service: str | None = None

    def by_name(self, name: str) -> ProbeTarget:
        for t in self.targets:
            if t.name == name:
                return t
        raise AgencyDataError(self.path, f"no probe target named {name!r}; known: "
                                         f"{', '.join(t.name for t in self.targets) or 'none'}", field="targets")

    @property
    def portals(self) -> list[str]:
        return list(dict.fromkeys(t.portal for t in self.targets
                                  if t.kind == "etax" and t.role == "primary" and t.portal))

    @property
    def services(self) -> list[str]:
        return list(dict.fromkeys(t.service for t in self.targets
                                  if t.kind == "saas" and t.role == "primary" and t.service))

    def resolve_portal(self, portal: str) -> str:
        """``default`` → the default (or only) portal; an unknown portal is an error naming the file."""
        if portal == "default":
            portal = self.default_portal or (self.portals[0] if len(self.portals) == 1 else "")
            if not portal:
                raise AgencyDataError(self.path, "resource etax:default but no default_portal is set and "
                                                 f"there are several portals: {', '.join(self.portals)}",
                                      field="default_portal")
        if portal not in self.portals:
            raise AgencyDataError(self.path, f"no etax probe target for portal {portal!r}; portals: "
                                             f"{', '.join(self.portals) or 'none'}", field="targets")
        return portal

    def resolve_service(self, service: str) -> str:
        if service == "default":
            service = self.default_service or (self.services[0] if len(self.services) == 1 else "")
        if service not in self.services:
            raise AgencyDataError(self.path, f"no saas probe target for service {service!r}; services: "
                                             f"{', '.join(self.services) or 'none'}", field="targets")
        return service

    def for_portal(self, portal: str, endpoints: Iterable[str] | None = None) -> list[ProbeTarget]:
        portal = self.resolve_portal(portal)
        wanted = set(endpoints or [])
        found = [t for t in self.targets if t.kind == "etax" and t.role == "primary" and t.portal == portal
                 and (not wanted or (t.endpoint or t.name) in wanted)]
        if not found:
            raise AgencyDataError(self.path, f"portal {portal!r} has no target for endpoints "
                                             f"{sorted(wanted)}", field="targets")
        return found

    def for_service(self, service: str) -> list[ProbeTarget]:
        service = self.resolve_service(service)
        return [t for t in self.targets if t.kind == "saas" and t.role == "primary" and t.service == service]

    def controls(self) -> list[ProbeTarget]:
        """Reference endpoints (role: control): another province's portal, a public site."""
        return [t for t in self.targets if t.role == "control"]


def load_targets(agency) -> ProbeTargets:
    path = targets_path(agency)
    if not path.is_file():
        raise AgencyDataError(path, "file not found (the probe targets of this agency)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AgencyDataError(path, f"not valid YAML: {exc}") from None
    if isinstance(raw, list):
        raw = {"targets": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("targets"), list):
        raise AgencyDataError(path, "expected a mapping with a list under targets:", field="targets")
    unknown = set(raw) - {"targets", "default_portal", "default_service"}
    if unknown:
        raise AgencyDataError(path, f"unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    targets: list[ProbeTarget] = []
    for i, item in enumerate(raw["targets"]):
        if not isinstance(item, dict):
            raise AgencyDataError(path, f"targets[{i}]: expected a mapping", field=f"targets.{i}")
        try:
            t = ProbeTarget.model_validate(item)
        except ValidationError as exc:
            err = validation_error(path, exc)
            raise AgencyDataError(path, f"targets[{i}] ({item.get('name', '?')}): "
                                        f"{str(err).split(': ', 1)[-1]}",
                                  field=f"targets.{i}.{err.field}" if err.field else f"targets.{i}") from None
        if any(o.name == t.name for o in targets):
            raise AgencyDataError(path, f"targets[{i}]: duplicate target name {t.name!r}", field=f"targets.{i}.name")
        targets.append(t)
    result = ProbeTargets(path=path, targets=targets, default_portal=raw.get("default_portal"),
                          default_service=raw.get("default_service"))
    if result.default_portal and result.default_portal not in result.portals:
        raise AgencyDataError(path, f"default_portal {result.default_portal!r} is not a portal of any "
                                    f"etax target", field="default_portal")
    return result


# --------------------------------------------------------------------------- probing
@dataclass
class ProbeResult:
    target: str
    at: datetime
    ok: bool
    status: int | None
    elapsed_ms: float
    error: str = ""
    url: str = ""
    detail: str = ""

    def to_row(self) -> dict[str, Any]:
        return {"target": self.target, "at": _iso(self.at), "ok": "true" if self.ok else "false",
                "status": "" if self.status is None else str(int(self.status)),
                "elapsed_ms": f"{self.elapsed_ms:.1f}", "error": self.error}

    def to_dict(self) -> dict[str, Any]:
        return {**self.to_row(), "ok": self.ok, "status": self.status, "elapsed_ms": self.elapsed_ms,
                "url": self.url, "detail": self.detail}


def _iso(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat(timespec="seconds")


def error_class(exc: BaseException) -> str:
    """A short, stable name for what went wrong on the wire."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return "invalid_url"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "ssl" in text or "certificate" in text:
            return "tls_error"
        if "name or service" in text or "nodename" in text or "getaddrinfo" in text:
            return "dns_error"
        return "connect_error"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol_error"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return "read_error"
    if isinstance(exc, httpx.HTTPError):
        return "http_error"
    return "error"


def probe(target: ProbeTarget, *, now: datetime | None = None, client: httpx.Client | None = None,
          url: str | None = None) -> ProbeResult:
    """One HTTP request to the target; a network failure is a result with ``ok=False``, never raised."""
    at = now or datetime.now(timezone.utc)
    url = url or target.url
    started = time.perf_counter()
    try:
        if client is not None:
            resp = client.request(target.method, url, timeout=target.timeout_s)
        else:
            with httpx.Client(follow_redirects=False, trust_env=False) as own:
                resp = own.request(target.method, url, timeout=target.timeout_s)
    except Exception as exc:  # noqa: BLE001 — every failure is a probe result
        elapsed = (time.perf_counter() - started) * 1000
        return ProbeResult(target=target.name, at=at, ok=False, status=None, elapsed_ms=round(elapsed, 1),
                           error=error_class(exc), url=url, detail=mask_text(f"{type(exc).__name__}: {exc}"[:300]))
    elapsed = (time.perf_counter() - started) * 1000
    ok = resp.status_code in target.expect_status
    return ProbeResult(target=target.name, at=at, ok=ok, status=resp.status_code, elapsed_ms=round(elapsed, 1),
                       error="" if ok else f"http_{resp.status_code}", url=url,
                       detail="" if ok else mask_text(resp.text[:200]))


# --------------------------------------------------------------------------- probe log
def append_probe_results(agency, results: Iterable[ProbeResult | dict[str, Any]], *,
                         path: Path | None = None) -> int:
    """Append results to the probe log (header written when the file is new). Returns rows written."""
    path = path or probe_log_path(agency)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [r.to_row() if isinstance(r, ProbeResult) else r for r in results]
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=PROBE_LOG_COLUMNS, extrasaction="ignore")
        if new:
            w.writeheader()
        for row in rows:
            w.writerow(row)
    return len(rows)


def write_probe_log(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rewrite the whole log atomically (drills and their undo only; sweeps append)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=PROBE_LOG_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow(row)
    os.replace(tmp, path)


_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def read_probe_log(agency, *, path: Path | None = None) -> pd.DataFrame:
    """The probe log as a DataFrame: target (str), at (UTC datetime), ok (bool), status (Int64),
    elapsed_ms (float), error (str), line (line number in the file)."""
    path = path or probe_log_path(agency)
    df = read_text_csv(path, "the probe log sweeps append to", PROBE_LOG_COLUMNS, empty_ok=True)
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in PROBE_LOG_COLUMNS + ["line"]})
    df["line"] = range(2, len(df) + 2)
    at = pd.to_datetime(df["at"], utc=True, errors="coerce", format="ISO8601")
    bad = at.isna()
    if bad.any():
        i = int(bad.idxmax())
        raise AgencyDataError(path, f"line {i + 2}: {df.at[i, 'at']!r} is not an ISO timestamp", field="at")
    ok = df["ok"].str.strip().str.lower().map(_TRUE)
    if ok.isna().any():
        i = int(ok.isna().idxmax())
        raise AgencyDataError(path, f"line {i + 2}: {df.at[i, 'ok']!r} is not true/false", field="ok")
    status = pd.to_numeric(df["status"].replace("", None), errors="coerce")
    bad = status.isna() & (df["status"].str.strip() != "")
    if bad.any():
        i = int(bad.idxmax())
        raise AgencyDataError(path, f"line {i + 2}: {df.at[i, 'status']!r} is not an HTTP status", field="status")
    elapsed = pd.to_numeric(df["elapsed_ms"].replace("", None), errors="coerce")
    bad = elapsed.isna() & (df["elapsed_ms"].str.strip() != "")
    if bad.any():
        i = int(bad.idxmax())
        raise AgencyDataError(path, f"line {i + 2}: {df.at[i, 'elapsed_ms']!r} is not a number",
                              field="elapsed_ms")
    df["at"] = at
    df["ok"] = ok.astype(bool)
    df["status"] = status.astype("Int64")
    df["elapsed_ms"] = elapsed.astype(float)
    return df


def sweep(agency, *, now: datetime | None = None, targets: Iterable[ProbeTarget] | None = None,
          live_only: bool = True) -> list[ProbeResult]:
    """Probe every (live) target once and append the results to the probe log."""
    now = now or datetime.now(timezone.utc)
    chosen = list(targets) if targets is not None else load_targets(agency).targets
    results = [probe(t, now=now) for t in chosen if t.live or not live_only]
    if results:
        append_probe_results(agency, results)
    return results


# --------------------------------------------------------------------------- analysis
@dataclass
class FailureRun:
    """The trailing run of failed probes of one target, up to now."""

    target: str
    failures: int
    first_failure_at: datetime | None
    last_failure_at: datetime | None
    last_ok_at: datetime | None
    last_at: datetime | None
    error_kinds: list[str] = field(default_factory=list)
    probes: int = 0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    @property
    def minutes(self) -> float:
        if not self.failures:
            return 0.0
        return (self.last_failure_at - self.first_failure_at).total_seconds() / 60


def trailing_failures(log: pd.DataFrame, target: str, *, now: datetime, since: datetime | None = None) -> FailureRun:
    """Consecutive failures of ``target`` up to ``now`` (the newest results backwards to an ok)."""
    rows = log[(log["target"] == target) & (log["at"] <= pd.Timestamp(now))]
    if since is not None:
        rows = rows[rows["at"] >= pd.Timestamp(since)]
    rows = rows.sort_values("at", kind="stable")
    if rows.empty:
        return FailureRun(target, 0, None, None, None, None, [], 0)
    ok = rows["ok"].to_numpy()
    n = len(ok)
    i = n
    while i > 0 and not ok[i - 1]:
        i -= 1
    failed = rows.iloc[i:]
    last_ok = rows.iloc[:i][rows.iloc[:i]["ok"]]
    last_ok_at = last_ok["at"].iloc[-1].to_pydatetime() if not last_ok.empty else None
    kinds = sorted({e for e in failed["error"] if e})
    return FailureRun(
        target=target, failures=len(failed),
        first_failure_at=failed["at"].iloc[0].to_pydatetime() if len(failed) else None,
        last_failure_at=failed["at"].iloc[-1].to_pydatetime() if len(failed) else None,
        last_ok_at=last_ok_at, last_at=rows["at"].iloc[-1].to_pydatetime(), error_kinds=kinds, probes=n)


def log_rows(log: pd.DataFrame, targets: Iterable[str], *, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Probe results of ``targets`` between start and end (inclusive), oldest first, as plain dicts."""
    names = set(targets)
    sel = log[log["target"].isin(names) & (log["at"] >= pd.Timestamp(start)) & (log["at"] <= pd.Timestamp(end))]
    sel = sel.sort_values("at", kind="stable")
    out = []
    for r in sel.itertuples(index=False):
        out.append({"target": r.target, "at": _iso(r.at.to_pydatetime()), "ok": bool(r.ok),
                    "status": None if pd.isna(r.status) else int(r.status),
                    "elapsed_ms": None if pd.isna(r.elapsed_ms) else float(r.elapsed_ms),
                    "error": r.error, "line": int(r.line)})
    return out


# --------------------------------------------------------------------------- filing deadline
_CALENDARS: dict[str, Any] = {}


def filing_calendar(path: Path | str | None = None):
    """The filing calendar (catalog/filing-calendar.yaml of the settings' catalog dir), cached."""
    from ledgerguard.calendar import FilingCalendar

    if path is None:
        from ledgerguard.config import get_settings

        path = Path(get_settings().catalog_dir) / "filing-calendar.yaml"
    key = str(path)
    if key not in _CALENDARS:
        _CALENDARS[key] = FilingCalendar.load(path)
    return _CALENDARS[key]


def current_period(now: datetime, tz) -> str:
    """The filing period being declared now: the month before ``now``'s local month (YYYY-MM)."""
    local = now.astimezone(tz)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return f"{year}-{month:02d}"


def period_deadline(calendar, period: str) -> datetime:
    """The monthly deadline of ``period`` (its returns are due in the following month), end of day."""
    from ledgerguard.calendar import CalendarError, end_of_day

    year, month = (int(p) for p in period.split("-"))
    year, month = (year, month + 1) if month < 12 else (year + 1, 1)
    days = [d for d in calendar.monthly.get(year, ()) if d.month == month]
    if not days:
        raise CalendarError(f"the filing calendar has no deadline in {year}-{month:02d} (period {period})")
    return end_of_day(days[0])


NOTICES_FILE = ("etax_notices", "probes/official-notices.yaml")


def official_extension(agency, *, portal: str, period: str) -> dict[str, Any] | None:
    """An official extension of ``period``'s deadline for ``portal`` (or all portals), from
    ``probes/official-notices.yaml`` (a list of {portal, period, new_deadline, title, url,
    published_at}); None when there is none (or no file)."""
    path = agency.data_file(*NOTICES_FILE)
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except yaml.YAMLError as exc:
        raise AgencyDataError(path, f"not valid YAML: {exc}") from None
    if isinstance(raw, dict):
        raw = raw.get("notices") or []
    if not isinstance(raw, list):
        raise AgencyDataError(path, "expected a list of notices", field="notices")
    from datetime import date as _date

    for i, n in enumerate(raw):
        if not isinstance(n, dict):
            raise AgencyDataError(path, f"notices[{i}]: expected a mapping", field=f"notices.{i}")
        if str(n.get("period")) != period or str(n.get("portal", "all")) not in (portal, "all"):
            continue
        new = n.get("new_deadline")
        if isinstance(new, str):
            try:
                new = _date.fromisoformat(new)
            except ValueError:
                new = None
        if not isinstance(new, _date):
            raise AgencyDataError(path, f"notices[{i}]: new_deadline must be a date (YYYY-MM-DD)",
                                  field=f"notices.{i}.new_deadline")
        return {**{k: str(v) for k, v in n.items()}, "new_deadline": new.isoformat()}
    return None


def unfiled_returns(agency, period: str, taxes: Iterable[str] | None = None) -> pd.DataFrame:
    """Rows of the filing tracker for ``period`` (and ``taxes``) still unfiled."""
    df = agency.filings()
    sel = df[(df["period"] == period) & (df["status"] == "unfiled")]
    wanted = [t for t in (taxes or [])]
    if wanted:
        sel = sel[sel["tax"].isin(wanted)]
    return sel


def deadline_facts(agency, *, now: datetime, portal: str | None = None, taxes: Iterable[str] | None = None,
                   calendar_file: str | None = None) -> dict[str, Any]:
    """The filing-deadline facts of an availability incident: the current period, its deadline
    (an official extension wins), hours to it, and the clients with returns still unfiled."""
    from ledgerguard.calendar import CalendarError, end_of_day

    period = current_period(now, agency.tz)
    facts: dict[str, Any] = {"filing_period": period}
    deadline = None
    try:
        deadline = period_deadline(filing_calendar(calendar_file), period)
    except CalendarError as exc:
        facts["deadline_unknown"] = str(exc)
    ext = official_extension(agency, portal=portal or "all", period=period) if portal else None
    facts["official_extension"] = ext is not None
    if ext:
        from datetime import date as _date

        deadline = end_of_day(_date.fromisoformat(ext["new_deadline"]))
        facts["official_extension_notice"] = ext
    unfiled = unfiled_returns(agency, period, taxes)
    clients = sorted(set(unfiled["client_id"]))
    facts.update(clients_unfiled=len(clients), unfiled_clients=clients, returns_unfiled=len(unfiled),
                 unfiled_taxes=sorted(set(unfiled["tax"])), clients_total=len(agency.client_ids))
    if deadline is not None:
        facts["deadline_at"] = deadline.isoformat()
        facts["hours_to_deadline"] = round((deadline - now).total_seconds() / 3600, 2)
    return facts


# --------------------------------------------------------------------------- filing errors
FILING_ERRORS_FILE = ("filing_errors", "probes/filing-errors.csv")
FILING_ERROR_COLUMNS = ["at", "portal", "client_id", "tax", "error_code", "message"]


def read_filing_errors(agency) -> pd.DataFrame:
    """The filing-error export (one row per failed submission): at, portal, client_id, tax, error_code, message."""
    path = agency.data_file(*FILING_ERRORS_FILE)
    df = read_text_csv(path, "the filing error export", FILING_ERROR_COLUMNS, empty_ok=True)
    at = pd.to_datetime(df["at"], utc=True, errors="coerce", format="ISO8601")
    if at.isna().any():
        i = int(at.isna().idxmax())
        raise AgencyDataError(path, f"line {i + 2}: {df.at[i, 'at']!r} is not an ISO timestamp", field="at")
    df["at"] = at
    df["line"] = range(2, len(df) + 2)
    return df


def write_filing_errors(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FILING_ERROR_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow(row)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- SaaS status page
STATUS_DIR = ("saas_status", "probes/status")
INDICATORS = ("none", "minor", "major", "critical", "maintenance")


def status_snapshot_path(agency, service: str) -> Path:
    return agency.data_file(*STATUS_DIR) / f"{service}.json"


def fetch_status(url: str, *, timeout_s: float = 10, now: datetime | None = None) -> dict[str, Any]:
    """GET a Statuspage ``/api/v2/status.json`` (or summary.json); the JSON plus ``fetched_at``.

    A network failure or a body that is not the Statuspage shape is returned as
    ``{"error": ..., "fetched_at": ...}``, never raised."""
    import json

    fetched_at = _iso(now or datetime.now(timezone.utc))
    try:
        with httpx.Client(trust_env=False) as client:
            resp = client.get(url, timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001
        return {"error": error_class(exc), "detail": str(exc)[:300], "url": url, "fetched_at": fetched_at}
    try:
        data = resp.json()
    except json.JSONDecodeError:
        return {"error": f"http_{resp.status_code}_not_json", "url": url, "fetched_at": fetched_at,
                "http_status": resp.status_code}
    if not isinstance(data, dict) or not isinstance(data.get("status"), dict):
        return {"error": "not_statuspage_json", "url": url, "fetched_at": fetched_at,
                "http_status": resp.status_code}
    return {**data, "url": url, "fetched_at": fetched_at, "http_status": resp.status_code}


def save_status_snapshot(agency, service: str, data: dict[str, Any]) -> Path:
    import json

    path = status_snapshot_path(agency, service)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_status_snapshot(agency, service: str) -> dict[str, Any]:
    """The last saved status of ``service``: Statuspage JSON with ``fetched_at`` (validated)."""
    import json

    path = status_snapshot_path(agency, service)
    if not path.is_file():
        raise AgencyDataError(path, f"no saved status snapshot for service {service!r}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AgencyDataError(path, f"line {exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise AgencyDataError(path, "expected a JSON object")
    if "error" not in data:
        status = data.get("status")
        if not isinstance(status, dict) or status.get("indicator") not in INDICATORS:
            raise AgencyDataError(path, f"status.indicator must be one of {', '.join(INDICATORS)}",
                                  field="status.indicator")
    if not data.get("fetched_at"):
        raise AgencyDataError(path, "fetched_at missing", field="fetched_at")
    return data


# --------------------------------------------------------------------------- SaaS sync status
SYNC_FILE = ("sync_status", "probes/sync-status.csv")
SYNC_COLUMNS = ["client_id", "service", "last_sync_at", "checked_at", "status", "message"]


def sync_status_path(agency) -> Path:
    return agency.data_file(*SYNC_FILE)


def read_sync_status(agency) -> pd.DataFrame:
    """The SaaS sync-status export: per client and service the last successful sync and when the
    export checked it (``checked_at``): the lag is measured at that moment, as the export saw it."""
    path = sync_status_path(agency)
    df = read_text_csv(path, "the SaaS sync-status export", SYNC_COLUMNS[:4])
    for col in ("last_sync_at", "checked_at"):
        parsed = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
        bad = parsed.isna() & (df[col].str.strip() != "") if col == "last_sync_at" else parsed.isna()
        if bad.any():
            i = int(bad.idxmax())
            raise AgencyDataError(path, f"line {i + 2}: {df.at[i, col]!r} is not an ISO timestamp", field=col)
        df[col] = parsed
    for col in ("status", "message"):
        if col not in df.columns:
            df[col] = ""
    unknown = ~df["client_id"].isin(agency.client_ids)
    if unknown.any():
        i = int(unknown.idxmax())
        raise AgencyDataError(path, f"line {i + 2}: unknown client {df.at[i, 'client_id']!r} "
                                    f"(not in {agency.clients_path.name})", field="client_id")
    df["line"] = range(2, len(df) + 2)
    return df


def write_sync_status(path: Path, df: pd.DataFrame) -> None:
    out = df.copy()
    for col in ("last_sync_at", "checked_at"):
        out[col] = out[col].map(lambda v: "" if pd.isna(v) else _iso(pd.Timestamp(v).to_pydatetime()))
    tmp = path.with_name(path.name + ".tmp")
    out[SYNC_COLUMNS].to_csv(tmp, index=False, encoding="utf-8")
    os.replace(tmp, path)
