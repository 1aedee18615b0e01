"""Auth, DLP and mail-click log detectors (emergency types ``insider_exfiltration``, resource
``user:<staff_id>|user:all``, and ``account_takeover``, resource ``account:<user>|account:all``)
and their paired injectors, which append the bad rows to the same log files.

Every detector reads its log through :mod:`ledgerguard.sources.logs` (only the columns it needs,
vectorised pandas) over a window ending at ``ctx.now``.
"""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

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
from ledgerguard.masking import mask_text
from ledgerguard.models import EvidenceItem
from ledgerguard.sources import logs as lg

INSIDER = "insider_exfiltration"
TAKEOVER = "account_takeover"
EXPORT_ACTIONS = ["export", "download"]
TRANSFER_ACTIONS = ["usb_copy", "cloud_upload"]
BAD_VERDICTS = ["phishing", "malware", "suspicious"]

# 最高法、最高检《关于办理侵犯公民个人信息刑事案件适用法律若干问题的解释》第五条: 财产信息 50 条,
# other personal information 5,000 条 make the offence "情节严重".
CRIME_THRESHOLD_FINANCIAL = 50
CRIME_THRESHOLD_OTHER = 5000
FINANCIAL_KINDS = {"bank_card", "salary", "payroll"}


def target_user(resource: str, agency=None) -> str | None:
    """``user:<id>``/``account:<id>`` → the id; ``…:all`` → None; anything else: ValueError.
    With ``agency``, an id that neither hr/staff.csv nor it/accounts.csv lists is a ValueError."""
    prefix = resource.split(":", 1)[0]
    if prefix not in ("user", "account"):
        raise ValueError(f"resource {resource!r} is not of the form user:<staff_id>|user:all or "
                         f"account:<user>|account:all")
    user = lg.parse_user_resource(resource, prefix)
    if user is not None and agency is not None:
        known: set[str] = set()
        staff, accounts = _staff(agency), _accounts(agency)
        if staff is not None:
            known |= set(staff["staff_id"])
        if accounts is not None:
            known |= set(accounts["user"])
        if known and user not in known:
            raise ValueError(f"unknown user {user!r}: not in {agency.data_file(*lg.STAFF)} nor "
                             f"{agency.data_file(*lg.ACCOUNTS)}")
    return user


def _user_filter(df: pd.DataFrame, user: str | None) -> pd.DataFrame:
    return df if user is None else df[df["user"] == user]


def _who(user: str | None) -> str:
    return f"user {user}" if user else "any user"


def _log_evidence(path: Path, rows: pd.DataFrame, description: str, limit: int = 20) -> EvidenceItem:
    sample = rows.head(limit).copy()
    sample["at"] = sample["at"].map(lambda t: t.isoformat())
    records = [{k: mask_text(str(v)) for k, v in r.items()} for r in sample.to_dict(orient="records")]
    return EvidenceItem(kind="log_line", description=description, path=str(path),
                        data={"rows": len(rows), "first": records})


def _staff(agency) -> pd.DataFrame | None:
    path = agency.data_file(*lg.STAFF)
    return lg.read_staff(agency) if path.is_file() else None


def _accounts(agency) -> pd.DataFrame | None:
    path = agency.data_file(*lg.ACCOUNTS)
    return lg.read_accounts(agency) if path.is_file() else None


def leavers(agency, now: datetime) -> pd.DataFrame:
    """Staff who resigned (resigned_on on or before today) or whose status is leaving/left."""
    staff = _staff(agency)
    if staff is None:
        return pd.DataFrame(columns=lg.STAFF_COLUMNS)
    today = now.astimezone(agency.tz).date()
    resigned = staff["resigned_on"].map(lambda d: d is not None and d <= today)
    return staff[resigned | staff["status"].isin(["leaving", "left"])]


def unhandled(agency, df: pd.DataFrame, column: str = "sessions_revoked_at") -> pd.DataFrame:
    """Rows not yet dealt with: drop a user's rows at or before their account's ``column`` time
    (it/accounts.csv: sessions revoked, password changed) — what came before was contained."""
    accounts = _accounts(agency)
    if accounts is None or df.empty:
        return df
    stamps = accounts.set_index("user")[column]
    stamps = stamps[stamps.astype(str).str.strip() != ""]
    if stamps.empty:
        return df
    handled_at = pd.to_datetime(stamps, format="ISO8601", utc=True, errors="coerce")
    cut = df["user"].map(handled_at)
    return df[cut.isna() | (df["at"] > cut)]


def reachable_clients(agency, user: str) -> list[str]:
    df = agency.clients
    return df.loc[df["accountant_id"] == user, "client_id"].tolist()


def privileged(agency, users: list[str], many_clients: int) -> bool:
    """An admin account, or one whose owner keeps the books of ``many_clients`` clients or more."""
    accounts = _accounts(agency)
    if accounts is not None:
        hit = accounts[accounts["user"].isin(users)]
        if bool(hit["privileged"].any()) or bool(hit["role"].isin(["admin", "it"]).any()):
            return True
    return any(len(reachable_clients(agency, u)) >= many_clients for u in users)


def data_facts(ctx: DetectionContext, rows: pd.DataFrame, *, left_agency: bool) -> dict[str, Any]:
    """Facts about the client data in DLP rows: clients, PII kinds, people, leak flags, crime."""
    agency = ctx.agency
    # Distinct (clients, kinds) cells first: a million rows hold few distinct combinations.
    combos = rows[["client_ids", "data_kinds"]].drop_duplicates().reset_index(drop=True)
    ids = lg.split_list(combos["client_ids"]) if len(combos) else pd.Series([], dtype=str)
    kinds_by_row = lg.split_list(combos["data_kinds"]) if len(combos) else pd.Series([], dtype=str)
    known = [c for c in dict.fromkeys(ids.tolist()) if agency.has_client(c)]
    unknown = sorted({c for c in ids.tolist() if not agency.has_client(c)})
    kinds = set(kinds_by_row.tolist())
    pii = kinds & lg.PII_KINDS
    # Clients whose employees' personal data is in the rows (row-wise: kinds and clients together).
    employee_rows = kinds_by_row[kinds_by_row.isin(lg.EMPLOYEE_KINDS)].index.unique()
    employee_clients = [c for c in dict.fromkeys(ids[ids.index.isin(employee_rows)].tolist())
                        if agency.has_client(c)]
    emp = agency.clients.set_index("client_id")["employees"]
    people = int(emp.reindex(employee_clients).fillna(0).sum())
    contacts = "contacts" in kinds or "phone" in kinds
    if pii:
        people += len(known) if contacts else 0
    role = ("both" if employee_clients and contacts else "entrusted" if employee_clients
            else "handler" if pii else None)
    financial = bool(kinds & FINANCIAL_KINDS)
    crime = bool(pii) and ((financial and people >= CRIME_THRESHOLD_FINANCIAL)
                           or people >= CRIME_THRESHOLD_OTHER)
    pii_kinds = sorted({lg.KIND_NAMES.get(k, k) for k in pii} | ({"name"} if "payroll" in kinds else set()))
    facts = base_facts(agency, known, pii_leaked=bool(pii) and left_agency)
    facts.update(rows_exported=int(rows["rows"].sum()) if len(rows) else 0,
                 data_kinds=sorted(kinds), pii_kinds=pii_kinds, sensitive_pii=bool(kinds & lg.SENSITIVE_KINDS),
                 pii_leak_suspected=bool(pii) and not left_agency, pii_people=people,
                 suspected_crime=crime, unknown_client_ids=unknown)
    if left_agency and pii:
        facts["pii_people_leaked"] = people
    if role:
        facts["agency_role"] = role
    return facts


def _resigned_facts(ctx: DetectionContext, users: list[str]) -> dict[str, Any]:
    gone = leavers(ctx.agency, ctx.now)
    hit = gone[gone["staff_id"].isin(users)]
    return {"employee_resigned": bool(len(hit)), "resigned_users": hit["staff_id"].tolist()}


def _window(ctx: DetectionContext, key: str, default: float) -> tuple[float, datetime]:
    hours = float(ctx.params.get(key) or default)
    return hours, ctx.now - timedelta(hours=hours)


# =========================================================================== insider
@register_detector
class BulkExportDetector(Detector):
    """Rows exported per user in the window ≥ ``min_rows``."""

    id = "dlp.bulk_export"
    emergency_type = INSIDER
    description = "rows exported/downloaded per user in window_hours (DLP log) vs min_rows"

    COLUMNS = ["user", "action", "rows", "client_ids", "data_kinds", "destination", "device_id", "file"]

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        user = target_user(ctx.resource, ctx.agency)
        min_rows = int(ctx.params.get("min_rows") or 5000)
        hours, since = _window(ctx, "window_hours", 24)
        actions = list(ctx.params.get("actions") or EXPORT_ACTIONS)
        path = lg.log_path(ctx.agency, lg.DLP_LOG)
        df = lg.read_log(ctx.agency, "dlp_log", columns=self.COLUMNS, since=since, until=ctx.now)
        df = unhandled(ctx.agency, _user_filter(df[df["action"].isin(actions)], user))
        per_user = df.groupby("user", sort=False)["rows"].sum()
        hot = per_user[per_user >= min_rows].sort_values(ascending=False)
        if hot.empty:
            top = (f"largest: {int(per_user.max())} rows by {per_user.idxmax()}" if len(per_user)
                   else "no exports")
            return DetectorResult.clear(f"{path.name}: no export of ≥ {min_rows} rows by {_who(user)} in "
                                        f"the last {hours:g} h ({len(df)} export rows; {top})")
        rows = df[df["user"].isin(hot.index)]
        users = hot.index.tolist()
        facts = data_facts(ctx, rows, left_agency=False)
        facts.update(_resigned_facts(ctx, users))
        facts.update(users=users, rows_by_user={u: int(n) for u, n in hot.items()},
                     exports=len(rows), window_hours=hours, min_rows=min_rows,
                     off_hours=bool(lg.off_hours_mask(rows["at"], str(ctx.params.get("off_hours") or "20:00-07:00"),
                                                      ctx.agency.tz).any()),
                     first_export_at=rows["at"].min().isoformat(), last_export_at=rows["at"].max().isoformat())
        summary = (f"{', '.join(users)} exported {facts['rows_exported']:,} rows in the last {hours:g} h "
                   f"(≥ {min_rows:,}): {len(facts['affected_clients'])} clients, data "
                   f"{', '.join(facts['data_kinds']) or '?'}")
        if facts["pii_people"]:
            summary += f", personal data of about {facts['pii_people']:,} people"
        return self.finding(ctx, summary, facts, [_log_evidence(path, rows, "export rows over the threshold")])


@register_detector
class UsbCloudUploadDetector(Detector):
    """Any copy of client data to a USB device or an outside cloud drive in the window."""

    id = "dlp.usb_cloud_upload"
    emergency_type = INSIDER
    description = "usb_copy / cloud_upload rows in the DLP log (destinations not allowed)"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        user = target_user(ctx.resource, ctx.agency)
        hours, since = _window(ctx, "window_hours", 24)
        actions = list(ctx.params.get("actions") or TRANSFER_ACTIONS)
        allowed = set(ctx.params.get("allowed_destinations") or [])
        path = lg.log_path(ctx.agency, lg.DLP_LOG)
        df = lg.read_log(ctx.agency, "dlp_log", columns=BulkExportDetector.COLUMNS, since=since, until=ctx.now)
        df = unhandled(ctx.agency, _user_filter(df[df["action"].isin(actions)], user))
        rows = df[~df["destination"].isin(allowed)]
        if rows.empty:
            return DetectorResult.clear(f"{path.name}: no {'/'.join(actions)} by {_who(user)} in the last "
                                        f"{hours:g} h" + (f" outside {sorted(allowed)}" if allowed else ""))
        users = list(dict.fromkeys(rows["user"]))
        facts = data_facts(ctx, rows, left_agency=True)
        facts.update(_resigned_facts(ctx, users))
        facts.update(users=users, transfers=len(rows), destinations=sorted(set(rows["destination"])),
                     actions=sorted(set(rows["action"])), window_hours=hours)
        summary = (f"{', '.join(users)} copied client data out {len(rows)} time(s) in the last {hours:g} h "
                   f"({', '.join(facts['actions'])} → {', '.join(facts['destinations'])}): "
                   f"{facts['rows_exported']:,} rows, {len(facts['affected_clients'])} clients")
        return self.finding(ctx, summary, facts, [_log_evidence(path, rows, "transfers out of the agency")])


@register_detector
class AfterResignationDetector(Detector):
    """A leaver's account used after the last working day, or off-hours after resigning."""

    id = "auth.after_resignation"
    emergency_type = INSIDER
    description = "successful logins of staff who resigned (hr/staff.csv): after last_day or off-hours"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        user = target_user(ctx.resource, ctx.agency)
        spec = str(ctx.params.get("off_hours") or "20:00-07:00")
        lg.parse_off_hours(spec)
        days = float(ctx.params.get("lookback_days") or 30)
        gone = leavers(agency, ctx.now)
        if user is not None:
            gone = gone[gone["staff_id"] == user]
        if gone.empty:
            return DetectorResult.clear(f"{agency.data_file(*lg.STAFF).name}: no "
                                        f"{'resignation for ' + user if user else 'staff member has resigned'}")
        path = lg.log_path(agency, lg.AUTH_LOG)
        df = lg.read_log(agency, "auth_log", columns=["user", "system", "event", "result", "ip", "device_id", "region"],
                         since=ctx.now - timedelta(days=days), until=ctx.now)
        df = unhandled(agency, df[(df["result"] == "ok") & df["user"].isin(gone["staff_id"])])
        tz = agency.tz
        local_day = df["at"].dt.tz_convert(tz).dt.date
        info = gone.set_index("staff_id")
        resigned_on = df["user"].map(info["resigned_on"])
        last_day = df["user"].map(info["last_day"])
        after_resign = pd.Series([r is None or d >= r for d, r in zip(local_day, resigned_on)], index=df.index,
                                 dtype=bool)
        after_last = pd.Series([l is not None and d > l for d, l in zip(local_day, last_day)], index=df.index,
                               dtype=bool)
        off = lg.off_hours_mask(df["at"], spec, tz) if len(df) else pd.Series([], dtype=bool)
        hit = df[after_last | (after_resign & off)]
        if hit.empty:
            return DetectorResult.clear(f"{path.name}: the {len(gone)} leaver(s) ({', '.join(gone['staff_id'])}) "
                                        f"have no login after their last day nor off-hours ({spec}) since "
                                        f"resigning in the last {days:g} days")
        users = list(dict.fromkeys(hit["user"]))
        facts = base_facts(agency, [])
        # What the leaver took since resigning (DLP log), for the rows/PII facts.
        dlp_path = lg.log_path(agency, lg.DLP_LOG)
        if dlp_path.is_file():
            dlp = lg.read_log(agency, "dlp_log", columns=BulkExportDetector.COLUMNS,
                              since=hit["at"].min() - timedelta(days=days), until=ctx.now)
            dlp = dlp[dlp["user"].isin(users)]
            first_resign = min(d for d in info.loc[users, "resigned_on"] if d is not None) \
                if any(d is not None for d in info.loc[users, "resigned_on"]) else None
            if first_resign is not None:
                dlp = dlp[dlp["at"].dt.tz_convert(tz).dt.date >= first_resign]
            if len(dlp):
                facts = data_facts(ctx, dlp, left_agency=bool(dlp["action"].isin(TRANSFER_ACTIONS).any()))
        facts.update(employee_resigned=True, resigned_users=users, logins_after_last_day=int(after_last.loc[hit.index].sum()),
                     off_hours_logins=int(off.loc[hit.index].sum()), first_at=hit["at"].min().isoformat(),
                     last_at=hit["at"].max().isoformat(), systems=sorted(set(hit["system"])),
                     ips=sorted(set(hit["ip"]))[:20],
                     attacker_active=bool((ctx.now - hit["at"].max()) <= timedelta(
                         minutes=float(ctx.params.get("active_minutes") or 60))))
        facts.setdefault("rows_exported", 0)
        facts.setdefault("sensitive_pii", False)
        summary = (f"leaver(s) {', '.join(users)} logged in {len(hit)} time(s) after resigning "
                   f"({facts['logins_after_last_day']} after the last day, {facts['off_hours_logins']} "
                   f"off-hours {spec})")
        if facts["rows_exported"]:
            summary += f"; exported {facts['rows_exported']:,} rows since resigning"
        return self.finding(ctx, summary, facts, [_log_evidence(path, hit, "leaver logins")])


# =========================================================================== account takeover
@register_detector
class NewDeviceLoginDetector(Detector):
    """A successful login in the recent window from a device or region the user never used in
    the ``lookback_days`` before."""

    id = "auth.new_device_login"
    emergency_type = TAKEOVER
    description = "logins (last recent_hours) from a device/region unseen in lookback_days of history"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        user = target_user(ctx.resource, ctx.agency)
        lookback = float(ctx.params.get("lookback_days") or 90)
        recent_h, recent_start = _window(ctx, "recent_hours", 24)
        path = lg.log_path(agency, lg.AUTH_LOG)
        df = lg.read_log(agency, "auth_log", columns=["user", "system", "event", "result", "ip", "device_id", "region"],
                         since=recent_start - timedelta(days=lookback), until=ctx.now)
        df = _user_filter(df, user)
        ok = df[(df["result"] == "ok") & (df["event"] == "login")]
        hist, recent = ok[ok["at"] < recent_start], ok[ok["at"] >= recent_start]
        dev_key = recent["user"] + "\x1f" + recent["device_id"]
        reg_key = recent["user"] + "\x1f" + recent["region"]
        new_dev = ~dev_key.isin(set(hist["user"] + "\x1f" + hist["device_id"]))
        new_reg = ~reg_key.isin(set(hist["user"] + "\x1f" + hist["region"]))
        hit = unhandled(agency, recent[new_dev | new_reg])
        if hit.empty:
            return DetectorResult.clear(f"{path.name}: {len(recent)} successful logins of {_who(user)} in the "
                                        f"last {recent_h:g} h, all from devices and regions seen in the "
                                        f"{lookback:g} days before")
        users = list(dict.fromkeys(hit["user"]))
        many = int(ctx.params.get("many_clients") or 20)
        first = hit["at"].min()
        # What the account did after the suspicious login (DLP rows from the same device or user).
        facts = base_facts(agency, [])
        pii_accessed, accessed = False, pd.DataFrame()
        if lg.log_path(agency, lg.DLP_LOG).is_file():
            dlp = lg.read_log(agency, "dlp_log", columns=BulkExportDetector.COLUMNS, since=first, until=ctx.now)
            accessed = dlp[dlp["user"].isin(users) & dlp["device_id"].isin(set(hit["device_id"]))]
            if len(accessed):
                facts = data_facts(ctx, accessed, left_agency=False)
                facts["pii_leak_suspected"] = False  # accessed by an attacker: assessed under Art. 57
                pii_accessed = bool(facts["pii_kinds"])
        exposed = list(dict.fromkeys(c for u in users for c in reachable_clients(agency, u)))
        active_min = float(ctx.params.get("active_minutes") or 60)
        devices = set(hit["device_id"])
        last_seen = df.loc[df["user"].isin(users) & df["device_id"].isin(devices), "at"].max()
        facts.update(users=users, new_device=bool(new_dev.loc[hit.index].any()),
                     new_region=bool(new_reg.loc[hit.index].any()),
                     new_devices=sorted(devices), new_regions=sorted(set(hit.loc[new_reg.loc[hit.index], "region"])),
                     ips=sorted(set(hit["ip"]))[:20], first_at=first.isoformat(),
                     account_privileged=privileged(agency, users, many), pii_accessed=pii_accessed,
                     clients_exposed=len(exposed), exposed_clients=exposed,
                     attacker_active=bool(ctx.now - last_seen <= timedelta(minutes=active_min)),
                     other_victims=0)
        what = []
        if facts["new_device"]:
            what.append(f"new device {', '.join(facts['new_devices'])}")
        if facts["new_region"]:
            what.append(f"new region {', '.join(facts['new_regions'])}")
        summary = (f"{', '.join(users)}: {len(hit)} login(s) from {' and '.join(what)} in the last {recent_h:g} h"
                   + (f"; personal data accessed afterwards ({', '.join(facts['pii_kinds'])})" if pii_accessed else ""))
        evidence = [_log_evidence(path, hit, "logins from unseen devices/regions")]
        if len(accessed):
            evidence.append(_log_evidence(lg.log_path(agency, lg.DLP_LOG), accessed, "data accessed afterwards"))
        return self.finding(ctx, summary, facts, evidence)


def rolling_max(df: pd.DataFrame, key: str, minutes: float) -> pd.Series:
    """Per ``key``: the most rows within any ``minutes`` window (``df`` sorted by ``at``)."""
    if df.empty:
        return pd.Series([], dtype="int64")
    counts = (df.assign(n=1).set_index("at").groupby(key, sort=False)["n"]
              .rolling(f"{int(minutes * 60)}s").sum())
    return counts.groupby(level=0).max().astype("int64")


@register_detector
class MfaFailuresDetector(Detector):
    """A burst of failed MFA challenges for one user."""

    id = "auth.mfa_failures"
    emergency_type = TAKEOVER
    description = "failed MFA challenges per user within window_minutes (auth log) vs min_failures"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        user = target_user(ctx.resource, ctx.agency)
        min_f = int(ctx.params.get("min_failures") or 5)
        minutes = float(ctx.params.get("window_minutes") or 15)
        hours, since = _window(ctx, "lookback_hours", 24)
        path = lg.log_path(agency, lg.AUTH_LOG)
        df = lg.read_log(agency, "auth_log", columns=["user", "event", "result", "ip", "device_id", "region"],
                         since=since, until=ctx.now)
        df = _user_filter(df, user)
        fails = unhandled(agency, df[(df["event"] == "mfa") & (df["result"] == "fail")])
        peak = rolling_max(fails, "user", minutes)
        hot = peak[peak >= min_f].sort_values(ascending=False)
        if hot.empty:
            most = f"most {int(peak.max())} for {peak.idxmax()}" if len(peak) else "none"
            return DetectorResult.clear(f"{path.name}: no burst of ≥ {min_f} MFA failures within {minutes:g} min "
                                        f"for {_who(user)} in the last {hours:g} h ({most})")
        users = hot.index.tolist()
        rows = fails[fails["user"].isin(users)]
        last = rows["at"].max()
        after = df[df["user"].isin(users) & (df["event"] == "mfa") & (df["result"] == "ok") & (df["at"] > rows["at"].min())]
        facts = base_facts(agency, [])
        exposed = list(dict.fromkeys(c for u in users for c in reachable_clients(agency, u)))
        facts.update(users=users, mfa_failures=int(hot.max()), mfa_failures_by_user={u: int(n) for u, n in hot.items()},
                     window_minutes=minutes, mfa_passed_after_burst=bool(len(after)),
                     account_privileged=privileged(agency, users, int(ctx.params.get("many_clients") or 20)),
                     attacker_active=bool(ctx.now - last <= timedelta(minutes=minutes)),
                     clients_exposed=len(exposed), exposed_clients=exposed, ips=sorted(set(rows["ip"]))[:20],
                     other_victims=max(0, len(users) - 1) if user is None else 0, pii_accessed=False)
        summary = (f"{', '.join(users)}: {int(hot.max())} failed MFA challenges within {minutes:g} min"
                   + ("; an MFA challenge was then approved" if facts["mfa_passed_after_burst"] else ""))
        return self.finding(ctx, summary, facts, [_log_evidence(path, rows, "failed MFA challenges")])


@register_detector
class MailClickDetector(Detector):
    """Staff clicked a link the mail gateway rates phishing/malware/suspicious."""

    id = "mail.click_logs"
    emergency_type = TAKEOVER
    description = "mail-gateway click log: clicks on links with a bad verdict"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        user = target_user(ctx.resource, ctx.agency)
        hours, since = _window(ctx, "lookback_hours", 72)
        verdicts = list(ctx.params.get("verdicts") or BAD_VERDICTS)
        path = lg.log_path(agency, lg.MAIL_CLICKS)
        df = lg.read_log(agency, "mail_clicks", since=since, until=ctx.now)
        bad = df[(df["action"] == "clicked") & df["verdict"].isin(verdicts)]
        mine = unhandled(agency, _user_filter(bad, user), "password_changed_at")
        if mine.empty:
            blocked = int(((df["action"] == "blocked") & df["verdict"].isin(verdicts)).sum())
            return DetectorResult.clear(f"{path.name}: no click by {_who(user)} on a {'/'.join(verdicts)} link in the "
                                        f"last {hours:g} h ({blocked} such messages blocked)")
        urls = set(mine["url"])
        same = bad[bad["url"].isin(urls) | bad["sender"].isin(set(mine["sender"]))]
        clickers = list(dict.fromkeys(same["user"]))
        victims = list(dict.fromkeys(mine["user"]))
        others = [u for u in clickers if u not in victims] if user else clickers[1:]
        exposed = list(dict.fromkeys(c for u in clickers for c in reachable_clients(agency, u)))
        facts = base_facts(agency, [])
        facts.update(users=victims, clicked_users=clickers, other_victims=len(others), other_victim_users=others,
                     urls=sorted(urls)[:20], senders=sorted(set(mine["sender"]))[:20],
                     subjects=sorted(set(mine["subject"]))[:10], verdicts=sorted(set(mine["verdict"])),
                     account_privileged=privileged(agency, clickers, int(ctx.params.get("many_clients") or 20)),
                     clients_exposed=len(exposed), exposed_clients=exposed, pii_accessed=False,
                     first_click_at=same["at"].min().isoformat())
        summary = (f"{len(clickers)} staff clicked a {'/'.join(facts['verdicts'])} link "
                   f"({', '.join(facts['urls'][:3])}) from {', '.join(facts['senders'][:3])}: {', '.join(clickers)}")
        return self.finding(ctx, summary, facts, [_log_evidence(path, same, "clicks on bad links")])


# =========================================================================== injectors
def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _append(ctx: InjectionContext, spec: tuple[str, str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    path = ctx.agency.data_file(*spec)
    before = _size(path)
    lg.append_rows(ctx.agency, spec, rows)
    return {"path": str(path), "size_before": before, "rows_appended": len(rows)}


class LogInjector(Injector):
    """Appends rows; ``restore`` truncates every touched log back to its size before."""

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        for item in (report.undo or {}).get("truncate", []):
            path = Path(item["path"])
            if item["size_before"] == 0:
                path.unlink(missing_ok=True)
            else:
                os.truncate(path, item["size_before"])
        staff = (report.undo or {}).get("staff_csv")
        if staff is not None:
            Path(staff["path"]).write_text(staff["text"], encoding="utf-8")


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def _pick_user(ctx: InjectionContext, user: str | None) -> str:
    if user:
        return user
    if ctx.resource.split(":", 1)[0] in ("user", "account"):
        u = target_user(ctx.resource)
        if u:
            return u
    accountants = [c for c in ctx.agency.clients["accountant_id"].tolist()]
    return accountants[0]


def _pick_clients(ctx: InjectionContext, clients: int | list[str], rng: random.Random) -> list[str]:
    if isinstance(clients, list):
        return clients
    ids = ctx.agency.client_ids
    return sorted(rng.sample(ids, min(int(clients), len(ids))))


@register_injector
class InjectBulkExport(LogInjector):
    """Append export rows: ``rows`` rows of ``kinds`` across ``clients`` clients by ``user``."""

    id = "dlp.inject_bulk_export"
    emergency_type = INSIDER
    detector = "dlp.bulk_export"

    def inject(self, ctx: InjectionContext, *, user: str | None = None, rows: int = 30000,
               clients: int | list[str] = 15, kinds: str = "payroll;id_number;bank_card",
               action: str = "export", destination: str = "local", minutes_ago: float = 20,
               device_id: str | None = None, **_: Any) -> InjectionReport:
        rng = random.Random(ctx.seed)
        user = _pick_user(ctx, user)
        chosen = _pick_clients(ctx, clients, rng)
        per = [int(rows) // len(chosen)] * len(chosen)
        per[-1] += int(rows) - sum(per)
        start = ctx.now - timedelta(minutes=float(minutes_ago))
        data = [{"at": _iso(start + timedelta(seconds=20 * i)), "user": user, "action": action, "rows": n,
                 "client_ids": cid, "data_kinds": kinds, "destination": destination,
                 "device_id": device_id or f"D-{user}-1", "file": f"{cid}_工资表_导出.xlsx"}
                for i, (cid, n) in enumerate(zip(chosen, per))]
        change = _append(ctx, lg.DLP_LOG, data)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"appended {len(data)} {action} rows ({rows} rows of {kinds}, "
                                       f"{len(chosen)} clients) by {user}",
                               changes={**change, "user": user, "clients": chosen, "rows": int(rows), "kinds": kinds},
                               undo={"truncate": [change]}, detector=self.detector)


@register_injector
class InjectUsbUpload(LogInjector):
    """Append a USB copy or cloud upload of client data."""

    id = "dlp.inject_usb_upload"
    emergency_type = INSIDER
    detector = "dlp.usb_cloud_upload"

    def inject(self, ctx: InjectionContext, *, user: str | None = None, action: str = "usb_copy",
               destination: str = "USB:Kingston-DT-64G", rows: int = 1200, clients: int | list[str] = 3,
               kinds: str = "payroll;bank_card", **_: Any) -> InjectionReport:
        report = get_bulk().inject(ctx, user=user, rows=rows, clients=clients, kinds=kinds, action=action,
                                   destination=destination, minutes_ago=10)
        report.injector, report.detector = self.id, self.detector
        return report


def get_bulk() -> InjectBulkExport:
    return InjectBulkExport()


@register_injector
class InjectAfterResignation(LogInjector):
    """Mark ``user`` as resigned in hr/staff.csv (last day ``days_ago`` days ago) and append
    off-hours logins after the last day (22:40–23:10 local the previous evening by default)."""

    id = "auth.inject_after_resignation"
    emergency_type = INSIDER
    detector = "auth.after_resignation"

    def inject(self, ctx: InjectionContext, *, user: str | None = None, days_ago: int = 3,
               logins: int = 3, **_: Any) -> InjectionReport:
        agency = ctx.agency
        user = _pick_user(ctx, user)
        path = agency.data_file(*lg.STAFF)
        text = path.read_text(encoding="utf-8")
        staff = lg.read_staff(agency)
        if user not in set(staff["staff_id"]):
            raise ValueError(f"{user!r} is not in {path}")
        local_now = ctx.now.astimezone(agency.tz)
        last_day = local_now.date() - timedelta(days=int(days_ago))
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        mask = raw["staff_id"] == user
        raw.loc[mask, "status"] = "left"
        raw.loc[mask, "resigned_on"] = (last_day - timedelta(days=30)).isoformat()
        raw.loc[mask, "last_day"] = last_day.isoformat()
        raw.to_csv(path, index=False, encoding="utf-8")
        # Late-evening logins on the most recent evening before now.
        evening = local_now.replace(hour=22, minute=40, second=0, microsecond=0)
        if evening > local_now:
            evening -= timedelta(days=1)
        rows = [{"at": _iso(evening + timedelta(minutes=10 * i)), "user": user, "system": "bookkeeping",
                 "event": "login", "result": "ok", "ip": "116.228.10.77", "device_id": f"D-{user}-1",
                 "region": "上海", "client_id": ""} for i in range(int(logins))]
        change = _append(ctx, lg.AUTH_LOG, rows)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"{user} left on {last_day}; appended {len(rows)} logins after that",
                               changes={**change, "user": user, "last_day": last_day.isoformat()},
                               undo={"truncate": [change], "staff_csv": {"path": str(path), "text": text}},
                               detector=self.detector)


@register_injector
class InjectNewRegionLogin(LogInjector):
    """Append a successful login (with MFA) of ``user`` from a new device in a new region."""

    id = "auth.inject_new_region_login"
    emergency_type = TAKEOVER
    detector = "auth.new_device_login"

    def inject(self, ctx: InjectionContext, *, user: str | None = None, region: str = "境外-美国",
               device_id: str = "D-unknown-7f3a", ip: str = "185.220.101.4", minutes_ago: float = 15,
               export_rows: int = 0, clients: int | list[str] = 2, **_: Any) -> InjectionReport:
        user = _pick_user(ctx, user)
        at = ctx.now - timedelta(minutes=float(minutes_ago))
        rows = [{"at": _iso(at), "user": user, "system": "mail", "event": "login", "result": "ok", "ip": ip,
                 "device_id": device_id, "region": region, "client_id": ""},
                {"at": _iso(at + timedelta(seconds=30)), "user": user, "system": "mail", "event": "mfa",
                 "result": "ok", "ip": ip, "device_id": device_id, "region": region, "client_id": ""}]
        changes = [_append(ctx, lg.AUTH_LOG, rows)]
        if export_rows:
            rng = random.Random(ctx.seed)
            chosen = _pick_clients(ctx, clients, rng)
            data = [{"at": _iso(at + timedelta(minutes=2, seconds=i)), "user": user, "action": "download",
                     "rows": max(1, int(export_rows) // len(chosen)), "client_ids": cid,
                     "data_kinds": "payroll;id_number", "destination": "local", "device_id": device_id,
                     "file": f"{cid}_工资表.xlsx"} for i, cid in enumerate(chosen)]
            changes.append(_append(ctx, lg.DLP_LOG, data))
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"appended a login of {user} from {device_id} in {region} ({ip})"
                                       + (f" and {export_rows} downloaded rows" if export_rows else ""),
                               changes={"user": user, "device_id": device_id, "region": region, "logs": changes},
                               undo={"truncate": changes}, detector=self.detector)


@register_injector
class InjectMfaBurst(LogInjector):
    """Append ``count`` failed MFA challenges for ``user`` within a few minutes."""

    id = "auth.inject_mfa_burst"
    emergency_type = TAKEOVER
    detector = "auth.mfa_failures"

    def inject(self, ctx: InjectionContext, *, user: str | None = None, count: int = 8,
               approve_after: bool = False, **_: Any) -> InjectionReport:
        user = _pick_user(ctx, user)
        start = ctx.now - timedelta(minutes=6)
        rows = [{"at": _iso(start + timedelta(seconds=30 * i)), "user": user, "system": "vpn", "event": "mfa",
                 "result": "fail", "ip": "45.83.64.12", "device_id": "D-unknown-mfa", "region": "境外-荷兰",
                 "client_id": ""} for i in range(int(count))]
        if approve_after:
            rows.append({**rows[-1], "at": _iso(start + timedelta(seconds=30 * int(count))), "result": "ok"})
        change = _append(ctx, lg.AUTH_LOG, rows)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"appended {count} failed MFA challenges for {user}",
                               changes={**change, "user": user, "count": int(count)},
                               undo={"truncate": [change]}, detector=self.detector)


@register_injector
class InjectPhishingClick(LogInjector):
    """Append clicks by ``users`` on one phishing link."""

    id = "mail.inject_phishing_click"
    emergency_type = TAKEOVER
    detector = "mail.click_logs"

    def inject(self, ctx: InjectionContext, *, users: list[str] | None = None, clicks: int = 2,
               url: str = "http://etax-gov-cn.verify-login.top/auth", sender: str = "notice@chinatax-gov.cn.top",
               subject: str = "【电子税务局】您的数字证书即将过期，请立即验证", **_: Any) -> InjectionReport:
        if not users:
            people = list(dict.fromkeys(ctx.agency.clients["accountant_id"].tolist()))
            first = _pick_user(ctx, None)
            users = [first] + [p for p in people if p != first][: max(0, int(clicks) - 1)]
        start = ctx.now - timedelta(minutes=40)
        rows = [{"at": _iso(start + timedelta(minutes=3 * i)), "user": u, "sender": sender, "subject": subject,
                 "url": url, "verdict": "phishing", "action": "clicked"} for i, u in enumerate(users)]
        change = _append(ctx, lg.MAIL_CLICKS, rows)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"appended clicks on {url} by {', '.join(users)}",
                               changes={**change, "users": users, "url": url, "sender": sender},
                               undo={"truncate": [change]}, detector=self.detector)


__all__ = ["BulkExportDetector", "UsbCloudUploadDetector", "AfterResignationDetector", "NewDeviceLoginDetector",
           "MfaFailuresDetector", "MailClickDetector", "data_facts", "rolling_max", "target_user"]
