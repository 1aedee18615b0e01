"""Identity actions on the agency's own account list (it/accounts.csv), the service-credential
store (it/service-credentials.csv), the certificate inventory and the mail-click log.

Which accounts: ``params.users``, else the one named by the resource (``user:<id>`` /
``account:<id>``), else (``…:all``) the users the type's detectors implicate right now. The
targets are remembered per incident (``<scratch>/<incident>/identity-targets.json``), so the next
step of the same runbook acts on the same accounts even after the first made them quiet. Every
change is appended to ``it/identity-actions.jsonl``. Running an action twice changes nothing more.
"""

from __future__ import annotations

import json
import os
import secrets

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ledgerguard.remediation.base import ActionContext, ActionFailed, ActionResult, register_action
from ledgerguard.sources import logs as lg

AUDIT = ("identity_actions", "it/identity-actions.jsonl")
SERVICE_CREDENTIALS = ("service_credentials", "it/service-credentials.csv")
SERVICE_COLUMNS = ["id", "system", "vendor_id", "kind", "owner", "secret_ref", "rotated_at"]
TYPE_BY_PREFIX = {"user": "insider_exfiltration", "account": "account_takeover"}


def _targets_file(ctx: ActionContext) -> Path:
    return ctx.incident_dir / "identity-targets.json"


def _implicated(ctx: ActionContext, emergency_type: str) -> list[str]:
    """Users named in the findings of the type's detectors (catalog params) on live data."""
    from ledgerguard.catalog import load_catalog
    from ledgerguard.config import get_settings
    from ledgerguard.response.detection import run_detectors

    entry = load_catalog(get_settings().catalog_dir).get(emergency_type)
    detection = run_detectors(entry=entry, agency=ctx.agency, resource=ctx.resource,
                              scratch_dir=ctx.incident_dir, now=ctx.now)
    users: list[str] = []
    for f in detection.findings:
        users += list(f.facts.get("users") or []) + list(f.facts.get("clicked_users") or [])
    return list(dict.fromkeys(users))


def target_users(ctx: ActionContext) -> list[str]:
    if ctx.params.get("users"):
        return [str(u) for u in ctx.params["users"]]
    prefix = ctx.resource.split(":", 1)[0]
    if prefix not in TYPE_BY_PREFIX:
        raise ValueError(f"resource {ctx.resource!r} is not of the form user:<staff_id>|user:all or "
                         f"account:<user>|account:all")
    user = lg.parse_user_resource(ctx.resource, prefix)
    if user:
        return [user]
    remembered = _targets_file(ctx)
    if remembered.is_file():
        return json.loads(remembered.read_text(encoding="utf-8"))["users"]
    users = _implicated(ctx, TYPE_BY_PREFIX[prefix])
    if not users:
        raise ActionFailed(f"resource {ctx.resource}: no account is implicated by the detectors now and no "
                           f"users were given (params.users)")
    if not ctx.dry_run:
        remembered.parent.mkdir(parents=True, exist_ok=True)
        remembered.write_text(json.dumps({"users": users, "at": ctx.now.isoformat()}), encoding="utf-8")
    return users


def _audit(ctx: ActionContext, action: str, user: str, changes: dict[str, Any]) -> None:
    path = ctx.agency.data_file(*AUDIT)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"at": ctx.now.isoformat(), "incident": ctx.incident_id, "action": action,
                             "user": user, "changes": changes}, ensure_ascii=False) + "\n")


def _marker(action: str, ctx: ActionContext) -> str:
    return f"[{action} {ctx.incident_id}]"


def _update_accounts(ctx: ActionContext, action: str, apply) -> ActionResult:
    """Run ``apply(row) -> changes`` on each target account not yet done for this incident."""
    accounts = lg.read_accounts(ctx.agency)
    users = target_users(ctx)
    unknown = [u for u in users if u not in set(accounts["user"])]
    if unknown:
        raise ActionFailed(f"{', '.join(unknown)} not in {ctx.agency.data_file(*lg.ACCOUNTS)}",
                           {"users": users})
    mark = _marker(action, ctx)
    done, already = [], []
    for user in users:
        i = accounts.index[accounts["user"] == user][0]
        if mark in str(accounts.at[i, "note"]):
            already.append(user)
            continue
        if ctx.dry_run:
            done.append(user)
            continue
        changes = apply(accounts, i)
        accounts.at[i, "note"] = (str(accounts.at[i, "note"]) + " " + mark).strip()
        _audit(ctx, action, user, changes)
        done.append(user)
    if done and not ctx.dry_run:
        lg.write_accounts(ctx.agency, accounts)
    verb = "would apply" if ctx.dry_run else "applied"
    summary = f"{action}: {verb} to {', '.join(done) or 'nobody new'}"
    if already:
        summary += f"; already done for {', '.join(already)}"
    return ActionResult(True, summary, {"users": users, "done": done, "already_done": already,
                                        "accounts_file": str(ctx.agency.data_file(*lg.ACCOUNTS)),
                                        "dry_run": ctx.dry_run})


@register_action("identity.disable_account")
def disable_account(ctx: ActionContext) -> ActionResult:
    """Set disabled=true on the implicated accounts."""

    def apply(df: pd.DataFrame, i) -> dict[str, Any]:
        before = bool(df.at[i, "disabled"])
        df.at[i, "disabled"] = True
        return {"disabled": [before, True]}

    return _update_accounts(ctx, "identity.disable_account", apply)


@register_action("identity.revoke_sessions")
def revoke_sessions(ctx: ActionContext) -> ActionResult:
    """Stamp sessions_revoked_at = now: every session and token issued before is void (the log
    detectors treat what came before as contained)."""
    stamp = ctx.now.astimezone(ctx.agency.tz).isoformat(timespec="seconds")

    def apply(df: pd.DataFrame, i) -> dict[str, Any]:
        before = df.at[i, "sessions_revoked_at"]
        df.at[i, "sessions_revoked_at"] = stamp
        return {"sessions_revoked_at": [before, stamp]}

    return _update_accounts(ctx, "identity.revoke_sessions", apply)


@register_action("identity.reset_password")
def reset_password(ctx: ActionContext) -> ActionResult:
    """Force a password reset (password_changed_at = now) and MFA re-enrolment (mfa_enrolled =
    false until the user enrols again)."""
    stamp = ctx.now.astimezone(ctx.agency.tz).isoformat(timespec="seconds")

    def apply(df: pd.DataFrame, i) -> dict[str, Any]:
        before = (df.at[i, "password_changed_at"], bool(df.at[i, "mfa_enrolled"]))
        df.at[i, "password_changed_at"] = stamp
        df.at[i, "mfa_enrolled"] = False
        return {"password_changed_at": [before[0], stamp], "mfa_enrolled": [before[1], False]}

    return _update_accounts(ctx, "identity.reset_password", apply)


# --------------------------------------------------------------------------- mail hunt
@register_action("mail.hunt_similar")
def hunt_similar(ctx: ActionContext) -> ActionResult:
    """Everyone who received or clicked the same URL or sender as the implicated users' bad
    clicks (mail-click log, ``params.lookback_hours``, default 168)."""
    from datetime import timedelta

    hours = float(ctx.params.get("lookback_hours") or 168)
    df = lg.read_log(ctx.agency, "mail_clicks", since=ctx.now - timedelta(hours=hours), until=ctx.now)
    users = target_users(ctx)
    bad = df[df["verdict"].isin(["phishing", "malware", "suspicious"])]
    seeds = bad[bad["user"].isin(users)]
    if ctx.params.get("urls"):
        seeds = bad[bad["url"].isin(ctx.params["urls"])]
    if seeds.empty:
        raise ActionFailed(f"no phishing/malware/suspicious message of {', '.join(users)} in the mail-click log "
                           f"of the last {hours:g} h to hunt from", {"users": users})
    urls, senders = set(seeds["url"]), set(seeds["sender"])
    same = df[df["url"].isin(urls) | df["sender"].isin(senders)]
    others = same[~same["user"].isin(users)]
    clicked = sorted(set(others.loc[others["action"] == "clicked", "user"]))
    received = sorted(set(others["user"]))
    out = {"urls": sorted(urls), "senders": sorted(senders), "other_recipients": received,
           "other_clickers": clicked, "other_victims": len(clicked), "messages": len(same)}
    if not ctx.dry_run:
        folder = ctx.incident_dir / "mail-hunt"
        folder.mkdir(parents=True, exist_ok=True)
        hits = same.copy()
        hits["at"] = hits["at"].map(lambda t: t.isoformat())
        hits.to_csv(folder / "matches.csv", index=False)
        out["matches_file"] = str(folder / "matches.csv")
    return ActionResult(True, f"{len(same)} message(s) with the same URL/sender; {len(received)} other "
                              f"recipient(s), {len(clicked)} clicked: {', '.join(clicked) or 'none'}", out)


# --------------------------------------------------------------------------- credentials
@register_action("credential.inventory")
def credential_inventory(ctx: ActionContext) -> ActionResult:
    """Snapshot the certificate/UKey inventory with days to expiry and the status against the
    next filing deadline into ``<scratch>/<incident>/credential-inventory.csv``."""
    from ledgerguard.calendar import CalendarError
    from ledgerguard.detectors.credentials import filing_calendar, target_client
    from ledgerguard.sources import certificates as certs

    client = target_client(ctx.agency, ctx.resource)
    inv = certs.read_inventory(ctx.agency)
    if client:
        inv = inv[inv["client_id"] == client]
    now = pd.Timestamp(ctx.now)
    try:
        deadline = pd.Timestamp(filing_calendar(ctx).next_monthly_deadline(ctx.now))  # type: ignore[arg-type]
    except CalendarError:
        deadline = None
    inv = inv.assign(days_to_expiry=((inv["not_after"] - now) / pd.Timedelta(days=1)).round(1))
    days = inv["days_to_expiry"]
    before = inv["not_after"] < deadline if deadline is not None else pd.Series(False, index=inv.index)
    status = pd.Series(np.select([days <= 0, before, days <= 30], ["expired", "expires_before_deadline",
                                                                   "expiring_30d"], "ok"), index=inv.index)
    inv = inv.assign(status=status)
    counts = {k: int(v) for k, v in status.value_counts().items()}
    out: dict[str, Any] = {"credentials": len(inv), "by_status": counts,
                           "next_deadline": deadline.isoformat() if deadline is not None else None,
                           "attention": inv.loc[status != "ok", ["client_id", "kind", "days_to_expiry", "status"]]
                           .to_dict(orient="records")[:100]}
    if not ctx.dry_run:
        ctx.incident_dir.mkdir(parents=True, exist_ok=True)
        snap = ctx.incident_dir / "credential-inventory.csv"
        inv.assign(not_after=inv["not_after"].dt.tz_convert(ctx.agency.tz).map(lambda t: t.isoformat()),
                   serial=inv["serial"].map(lambda s: "*" * max(0, len(s) - 4) + s[-4:])).to_csv(snap, index=False)
        out["snapshot"] = str(snap)
    return ActionResult(True, f"inventory of {len(inv)} credential(s): " +
                        ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), out)


def read_service_credentials(agency) -> pd.DataFrame:
    path = agency.data_file(*SERVICE_CREDENTIALS)
    if not path.is_file():
        return pd.DataFrame(columns=SERVICE_COLUMNS)
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    for col in SERVICE_COLUMNS:
        if col not in df.columns:
            from ledgerguard.agency.models import AgencyDataError

            raise AgencyDataError(path, "required column missing", field=col)
    return df[SERVICE_COLUMNS]


def _write_service_credentials(agency, df: pd.DataFrame) -> Path:
    path = agency.data_file(*SERVICE_CREDENTIALS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df[SERVICE_COLUMNS].to_csv(tmp, index=False, encoding="utf-8")
    os.replace(tmp, path)
    return path


@register_action("credentials.rotate")
def rotate_credentials(ctx: ActionContext) -> ActionResult:
    """Rotate service credentials / API keys: for ``vendor:<id>`` those held at that vendor (a
    vendor whose register entry says ``credentials: true`` gets its entry created), for
    ``user:``/``account:`` resources the accounts' passwords (as identity.reset_password), else
    ``params.systems``. A new secret version is recorded (secret_ref) with rotated_at; the secret
    itself lives in the agency's vault, never here. Done once per incident."""
    agency = ctx.agency
    prefix = ctx.resource.split(":", 1)[0]
    if prefix in TYPE_BY_PREFIX:
        return reset_password(ctx)
    df = read_service_credentials(agency)
    if prefix == "vendor":
        vendor_id = ctx.resource.split(":", 1)[1]
        from ledgerguard.sources import vendors as vd

        v = vd.vendor(agency, vendor_id)  # AgencyDataError naming the register for an unknown vendor
        rows = df[df["vendor_id"] == vendor_id]
        if rows.empty:
            if not getattr(v, "credentials", False):
                raise ActionFailed(f"vendor {vendor_id} holds no credentials of ours (vendor register and "
                                   f"{agency.data_file(*SERVICE_CREDENTIALS).name})")
            df = pd.concat([df, pd.DataFrame([{"id": f"vendor-{vendor_id}", "system": v.service or vendor_id,
                                               "vendor_id": vendor_id, "kind": "password", "owner": "it",
                                               "secret_ref": f"vault://vendors/{vendor_id}#v1", "rotated_at": ""}])],
                           ignore_index=True)
        pick = df["vendor_id"] == vendor_id
    else:
        systems = set(ctx.params.get("systems") or [])
        if not systems:
            raise ActionFailed(f"resource {ctx.resource}: say which credentials to rotate (params.systems)")
        pick = df["system"].isin(systems) | df["id"].isin(systems)
    mark = f"{ctx.incident_id}"
    rotated, already = [], []
    stamp = ctx.now.astimezone(agency.tz).isoformat(timespec="seconds")
    for i in df.index[pick]:
        if df.at[i, "secret_ref"].endswith(f"@{mark}"):
            already.append(df.at[i, "id"])
            continue
        if not ctx.dry_run:
            base = df.at[i, "secret_ref"].split("#")[0]
            df.at[i, "secret_ref"] = f"{base}#{secrets.token_hex(4)}@{mark}"
            df.at[i, "rotated_at"] = stamp
            _audit(ctx, "credentials.rotate", df.at[i, "id"], {"rotated_at": stamp})
        rotated.append(df.at[i, "id"])
    if not rotated and not already:
        raise ActionFailed(f"no credential matches {ctx.resource} in {agency.data_file(*SERVICE_CREDENTIALS)}")
    if rotated and not ctx.dry_run:
        _write_service_credentials(agency, df)
    return ActionResult(True, f"rotated {len(rotated)} credential(s)" + (f", {len(already)} already rotated for "
                                                                         f"this incident" if already else ""),
                        {"rotated": rotated, "already_done": already, "dry_run": ctx.dry_run})


__all__ = ["disable_account", "revoke_sessions", "reset_password", "hunt_similar", "credential_inventory",
           "rotate_credentials", "target_users", "read_service_credentials"]
