"""Credential detectors (emergency type ``credential_expiry``, resource
``credential:<client_id>|credential:all``) and their paired injectors: certificate / UKey expiry
against warn_days and the next filing deadline, and failed e-tax logins per client."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.calendar import CalendarError, FilingCalendar
from ledgerguard.detectors.base import (
    DetectionContext,
    Detector,
    DetectorResult,
    InjectionContext,
    InjectionReport,
    Injector,
    base_facts,
    register_detector,
    register_injector,
)
from ledgerguard.models import EvidenceItem
from ledgerguard.sources import certificates as certs
from ledgerguard.sources import logs as lg

EMERGENCY_TYPE = "credential_expiry"


def target_client(agency, resource: str) -> str | None:
    """``credential:C0001`` → ``C0001`` (must be a known client); ``credential:all`` → None."""
    value = lg.parse_user_resource(resource, "credential")
    if value is not None:
        agency.client(value)  # UnknownClientError naming clients.csv
    return value


@lru_cache(maxsize=4)
def _calendar(path: str) -> FilingCalendar:
    return FilingCalendar.load(path)


def filing_calendar(ctx: DetectionContext) -> FilingCalendar:
    from ledgerguard.config import get_settings

    path = ctx.params.get("calendar_file") or (get_settings().catalog_dir / "filing-calendar.yaml")
    return _calendar(str(path))


def _mask_serial(serial: str) -> str:
    s = str(serial)
    return s if len(s) <= 4 else "*" * (len(s) - 4) + s[-4:]


@register_detector
class CertExpiryDetector(Detector):
    """Credentials expiring within ``warn_days``, or before the next monthly filing deadline."""

    id = "credential.cert_expiry"
    emergency_type = EMERGENCY_TYPE
    description = "certificate/UKey not_after vs warn_days and the next filing deadline (filing calendar)"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        client = target_client(agency, ctx.resource)
        warn = float(ctx.params.get("warn_days") if ctx.params.get("warn_days") is not None else 30)
        inv = certs.read_inventory(agency)
        if client is not None:
            inv = inv[inv["client_id"] == client]
        deadline, note = None, ""
        try:
            deadline = filing_calendar(ctx).next_monthly_deadline(ctx.now)
        except CalendarError as exc:
            note = f" (next filing deadline unknown: {exc})"
        now = pd.Timestamp(ctx.now)
        days = (inv["not_after"] - now) / pd.Timedelta(days=1)
        before_deadline = inv["not_after"] < pd.Timestamp(deadline) if deadline else pd.Series(False, index=inv.index)
        hit = inv[(days <= warn) | before_deadline]
        where = f"{client}'s" if client else f"{inv['client_id'].nunique()} clients'"
        if hit.empty:
            soonest = f"; soonest {days.min():.0f} days" if len(inv) else ""
            dl = f", all valid past the next deadline {deadline:%Y-%m-%d}" if deadline else ""
            return DetectorResult.clear(f"{certs.inventory_path(agency).name}: none of {where} {len(inv)} "
                                        f"credentials expires within {warn:g} days{dl}{soonest}{note}")
        hit_days = days.loc[hit.index]
        clients = list(dict.fromkeys(hit["client_id"]))
        expired = hit_days <= 0
        facts = base_facts(agency, clients)
        facts.update(days_to_expiry=int(hit_days.min() // 1),
                     expires_before_deadline=bool(before_deadline.loc[hit.index].any()),
                     expired=int(expired.sum()), credentials_expiring=len(hit), warn_days=warn,
                     next_deadline=deadline.isoformat() if deadline else None,
                     credentials=[{"client_id": r.client_id, "kind": r.kind, "serial": _mask_serial(r.serial),
                                   "not_after": r.not_after.isoformat(), "days_to_expiry": round(float(d), 1)}
                                  for r, d in zip(hit.itertuples(), hit_days)][:100],
                     kinds=sorted(set(hit["kind"])))
        if deadline is not None:
            facts["deadline_at"] = deadline.isoformat()
        worst = hit.loc[hit_days.idxmin()]
        summary = (f"{len(hit)} credential(s) of {len(clients)} client(s) expire within {warn:g} days or before "
                   f"the next filing deadline{' ' + format(deadline, '%Y-%m-%d') if deadline else ''}: soonest "
                   f"{worst['client_id']} {worst['kind']} on {worst['not_after'].tz_convert(agency.tz):%Y-%m-%d} "
                   f"({hit_days.min():.0f} days)")
        evidence = [EvidenceItem(kind="file", description="certificate inventory rows",
                                 path=str(certs.inventory_path(agency)), data={"rows": facts["credentials"][:20]})]
        return self.finding(ctx, summary, facts, evidence)


@register_detector
class LoginFailuresDetector(Detector):
    """Failed e-tax logins per client within ``window_minutes`` ≥ ``min_failures`` (auth log)."""

    id = "credential.login_failures"
    emergency_type = EMERGENCY_TYPE
    description = "failed e-tax logins per client (auth log, system etax) within window_minutes"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        client = target_client(agency, ctx.resource)
        min_f = int(ctx.params.get("min_failures") or 3)
        minutes = float(ctx.params.get("window_minutes") or 60)
        hours = float(ctx.params.get("lookback_hours") or 24)
        path = lg.log_path(agency, lg.AUTH_LOG)
        df = lg.read_log(agency, "auth_log", columns=["user", "system", "event", "result", "ip", "client_id"],
                         since=ctx.now - timedelta(hours=hours), until=ctx.now)
        fails = df[(df["system"] == "etax") & (df["event"] == "login") & (df["result"] == "fail")
                   & (df["client_id"] != "")]
        if client is not None:
            fails = fails[fails["client_id"] == client]
        from ledgerguard.detectors.logs import rolling_max

        peak = rolling_max(fails, "client_id", minutes)
        hot = peak[peak >= min_f].sort_values(ascending=False)
        if hot.empty:
            most = f"most {int(peak.max())} for {peak.idxmax()}" if len(peak) else "none"
            return DetectorResult.clear(f"{path.name}: no client with ≥ {min_f} failed e-tax logins within "
                                        f"{minutes:g} min in the last {hours:g} h ({most})")
        clients = hot.index.tolist()
        rows = fails[fails["client_id"].isin(clients)]
        facts = base_facts(agency, clients)
        facts.update(login_failures=int(hot.max()), login_failures_by_client={c: int(n) for c, n in hot.items()},
                     window_minutes=minutes, users=sorted(set(rows["user"])))
        # Is an expired credential the likely cause?
        try:
            inv = certs.read_inventory(agency)
            lapsed = inv[inv["client_id"].isin(clients) & (inv["not_after"] <= pd.Timestamp(ctx.now))]
            facts["expired_credentials"] = sorted(set(lapsed["client_id"]))
            if len(lapsed):
                facts["days_to_expiry"] = int(((lapsed["not_after"] - pd.Timestamp(ctx.now)) / pd.Timedelta(days=1)).min() // 1)
        except AgencyDataError:
            pass  # no inventory: the cause stays unknown
        sample = rows.head(20).copy()
        sample["at"] = sample["at"].map(lambda t: t.isoformat())
        evidence = [EvidenceItem(kind="log_line", description="failed e-tax logins", path=str(path),
                                 data={"rows": sample.to_dict(orient="records")})]
        return self.finding(ctx, f"{int(hot.max())} failed e-tax logins within {minutes:g} min for "
                                 f"{', '.join(clients)}", facts, evidence)


# =========================================================================== injectors
def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


@register_injector
class InjectExpiring(Injector):
    """Make one credential of the client expire ``days`` days from now (default 5, a 税务UKey)."""

    id = "credential.inject_expiring"
    emergency_type = EMERGENCY_TYPE
    detector = "credential.cert_expiry"

    def inject(self, ctx: InjectionContext, *, client_id: str | None = None, days: float = 5,
               kind: str = "税务UKey", **_: Any) -> InjectionReport:
        agency = ctx.agency
        client_id = client_id or target_client(agency, ctx.resource) or agency.client_ids[0]
        path = certs.inventory_path(agency)
        text = path.read_text(encoding="utf-8")
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        mask = (raw["client_id"] == client_id) & (raw["kind"] == kind)
        if not mask.any():
            raise ValueError(f"{path} has no {kind} for {client_id}")
        when = (ctx.now + timedelta(days=float(days))).astimezone(agency.tz)
        i = raw.index[mask][0]
        old = raw.loc[i, "not_after"]
        raw.loc[i, "not_after"] = when.isoformat(timespec="seconds")
        raw.to_csv(path, index=False, encoding="utf-8")
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"{client_id} {kind} now expires {when:%Y-%m-%d %H:%M} ({days:g} days)",
                               changes={"client_id": client_id, "kind": kind, "not_after_before": old,
                                        "not_after": raw.loc[i, "not_after"]},
                               undo={"path": str(path), "text": text}, detector=self.detector)

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        Path(report.undo["path"]).write_text(report.undo["text"], encoding="utf-8")


@register_injector
class InjectLoginFailures(Injector):
    """Append ``count`` failed e-tax logins for the client within a few minutes."""

    id = "credential.inject_login_failures"
    emergency_type = EMERGENCY_TYPE
    detector = "credential.login_failures"

    def inject(self, ctx: InjectionContext, *, client_id: str | None = None, count: int = 5,
               **_: Any) -> InjectionReport:
        agency = ctx.agency
        client_id = client_id or target_client(agency, ctx.resource) or agency.client_ids[0]
        user = agency.client(client_id).accountant_id
        start = ctx.now - timedelta(minutes=10)
        rows = [{"at": _iso(start + timedelta(minutes=i)), "user": user, "system": "etax", "event": "login",
                 "result": "fail", "ip": "10.0.3.21", "device_id": f"D-{user}-1", "region": agency.config.name[:2],
                 "client_id": client_id} for i in range(int(count))]
        path = lg.log_path(agency, lg.AUTH_LOG)
        before = path.stat().st_size if path.is_file() else 0
        lg.append_rows(agency, lg.AUTH_LOG, rows)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"appended {count} failed e-tax logins for {client_id}",
                               changes={"client_id": client_id, "count": int(count), "path": str(path)},
                               undo={"truncate": [{"path": str(path), "size_before": before}]}, detector=self.detector)

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        from ledgerguard.detectors.logs import LogInjector

        LogInjector.restore(self, ctx, report)  # type: ignore[arg-type]


__all__ = ["CertExpiryDetector", "LoginFailuresDetector", "InjectExpiring", "InjectLoginFailures",
           "filing_calendar", "target_client"]
