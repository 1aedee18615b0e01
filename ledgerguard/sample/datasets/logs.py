"""Healthy auth / DLP / mail-click logs, the HR staff list and the IT account list.

90 days of ordinary working-day activity (08:30–18:30 local, working days per chinese_calendar):
every staff member logs in from their own one or two devices in the agency's city, passes MFA,
accountants log in to the e-tax bureau for their clients (now and then one mistyped password) and
export modest reports; phishing mail is blocked by the gateway. One former employee left three
weeks ago (account disabled, no activity since). Nothing here trips a detector.
"""

from __future__ import annotations

import csv
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from ledgerguard.sources import logs as lg

NAME = "logs"
DAYS = 90


def _workday(d: date) -> bool:
    import chinese_calendar

    try:
        return chinese_calendar.is_workday(d)
    except NotImplementedError:
        return d.weekday() < 5


def _write(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def generate(ctx) -> dict[str, Any]:
    rng = ctx.rng(NAME)
    agency = ctx.agency
    tz = ctx.tz
    now_local = ctx.local_now
    city = agency.config.name[:2]
    people = ctx.people or [{"id": a, "name": a, "roles": ["accountants"]}
                            for a in dict.fromkeys(agency.clients["accountant_id"])]
    clients_by_acct: dict[str, list[str]] = {}
    employees = dict(zip(agency.clients["client_id"], agency.clients["employees"]))
    for cid, acct in zip(agency.clients["client_id"], agency.clients["accountant_id"]):
        clients_by_acct.setdefault(acct, []).append(cid)

    today = now_local.date()
    # --- staff and accounts -------------------------------------------------------------
    staff_rows, account_rows = [], []
    for p in people:
        hired = today - timedelta(days=rng.randint(200, 2500))
        staff_rows.append({"staff_id": p["id"], "name": p["name"], "status": "active",
                           "hired_on": hired.isoformat(), "resigned_on": "", "last_day": ""})
        admin = bool({"it", "owner"} & set(p.get("roles", [])))
        changed = datetime.combine(today - timedelta(days=rng.randint(5, 80)), time(9, 30), tzinfo=tz)
        account_rows.append({"user": p["id"], "name": p["name"], "role": "admin" if admin else "staff",
                             "privileged": "true" if admin else "false", "disabled": "false",
                             "mfa_enrolled": "true", "password_changed_at": changed.isoformat(),
                             "sessions_revoked_at": "", "note": ""})
    former = {"id": "former_" + people[-1]["id"][:4] + "01", "name": "离职员工"}
    last_day = today - timedelta(days=21)
    staff_rows.append({"staff_id": former["id"], "name": former["name"], "status": "left",
                       "hired_on": (today - timedelta(days=700)).isoformat(),
                       "resigned_on": (last_day - timedelta(days=30)).isoformat(), "last_day": last_day.isoformat()})
    account_rows.append({"user": former["id"], "name": former["name"], "role": "staff", "privileged": "false",
                         "disabled": "true", "mfa_enrolled": "true", "password_changed_at": "",
                         "sessions_revoked_at": datetime.combine(last_day, time(18, 0), tzinfo=tz).isoformat(),
                         "note": "离职停用"})
    _write(agency.data_file(*lg.STAFF), lg.STAFF_COLUMNS, staff_rows)
    creds = [{"id": sid, "system": system, "vendor_id": "", "kind": kind, "owner": "it",
              "secret_ref": f"vault://agency/{sid}#v{rng.randint(1, 9)}",
              "rotated_at": datetime.combine(today - timedelta(days=rng.randint(10, 170)), time(10, 0),
                                             tzinfo=tz).isoformat()}
             for sid, system, kind in [("mail-admin", "mail", "password"), ("vpn-psk", "vpn", "pre_shared_key"),
                                       ("bookkeeping-db", "bookkeeping", "password"),
                                       ("bank-api", "bank", "api_key"), ("nas-admin", "fileshare", "password")]]
    _write(agency.data_file("service_credentials", "it/service-credentials.csv"),
           ["id", "system", "vendor_id", "kind", "owner", "secret_ref", "rotated_at"], creds)
    _write(agency.data_file(*lg.ACCOUNTS), lg.ACCOUNT_COLUMNS, account_rows)

    # --- auth, dlp, mail ----------------------------------------------------------------
    auth, dlp, mail = [], [], []
    actors = [(p["id"], None) for p in people] + [(former["id"], last_day)]
    devices = {uid: [f"D-{uid}-1"] + ([f"D-{uid}-2"] if rng.random() < 0.5 else []) for uid, _ in actors}
    ips = {uid: f"10.0.{rng.randint(1, 20)}.{rng.randint(10, 250)}" for uid, _ in actors}

    def at(d: date, minute: int) -> datetime:
        return datetime.combine(d, time(8, 30), tzinfo=tz) + timedelta(minutes=minute)

    def add_auth(t: datetime, uid: str, system: str, event: str, result: str, device: str, client: str = "") -> None:
        if t <= now_local:
            auth.append({"at": t.isoformat(timespec="seconds"), "user": uid, "system": system, "event": event,
                         "result": result, "ip": ips[uid], "device_id": device, "region": city, "client_id": client})

    seen: set[str] = set()
    for back in range(DAYS, -1, -1):
        d = today - timedelta(days=back)
        if not _workday(d):
            continue
        for uid, left_on in actors:
            if left_on is not None and d > left_on:
                continue
            devs = devices[uid]
            # On the first day every device is used, so none is "new" later on.
            used = devs if uid not in seen else [rng.choice(devs)]
            seen.add(uid)
            for dev in used:
                t = at(d, rng.randint(0, 60))
                add_auth(t, uid, "bookkeeping", "login", "ok", dev)
                if rng.random() < 0.03:
                    add_auth(t + timedelta(seconds=20), uid, "bookkeeping", "mfa", "fail", dev)
                add_auth(t + timedelta(seconds=40), uid, "bookkeeping", "mfa", "ok", dev)
                add_auth(t + timedelta(minutes=rng.randint(3, 30)), uid, "mail", "login", "ok", dev)
                add_auth(at(d, rng.randint(540, 595)), uid, "bookkeeping", "logout", "ok", dev)
            mine = clients_by_acct.get(uid, [])
            for cid in rng.sample(mine, min(len(mine), rng.randint(0, 3))):
                t = at(d, rng.randint(60, 480))
                if rng.random() < 0.05:
                    add_auth(t - timedelta(minutes=1), uid, "etax", "login", "fail", devs[0], cid)
                add_auth(t, uid, "etax", "login", "ok", devs[0], cid)
            if mine and rng.random() < 0.5:
                cid = rng.choice(mine)
                kinds, rows = rng.choice([("ledger", rng.randint(50, 900)), ("tax_return", rng.randint(5, 60)),
                                          ("invoice", rng.randint(20, 600)),
                                          ("payroll;id_number;bank_card", int(employees.get(cid, 5)))])
                t = at(d, rng.randint(60, 540))
                if t <= now_local:
                    dlp.append({"at": t.isoformat(timespec="seconds"), "user": uid,
                                "action": rng.choice(["export", "export", "download", "print"]), "rows": rows,
                                "client_ids": cid, "data_kinds": kinds, "destination": "local",
                                "device_id": devs[0], "file": f"{cid}_{kinds.split(';')[0]}_{d:%Y%m}.xlsx"})
            if rng.random() < 0.3:
                t = at(d, rng.randint(0, 560))
                if t <= now_local:
                    mail.append({"at": t.isoformat(timespec="seconds"), "user": uid,
                                 "sender": rng.choice(["service@chinatax.gov.cn", "news@kingdee.com",
                                                       "noreply@mail.icbc.com.cn", "hr@agency.example"]),
                                 "subject": rng.choice(["申报提醒", "产品更新通知", "电子回单", "本月考勤"]),
                                 "url": rng.choice(["https://etax.chinatax.gov.cn/", "https://www.kingdee.com/news",
                                                    "https://www.icbc.com.cn/"]),
                                 "verdict": "clean", "action": "clicked"})
            if rng.random() < 0.04:
                t = at(d, rng.randint(0, 560))
                if t <= now_local:
                    mail.append({"at": t.isoformat(timespec="seconds"), "user": uid,
                                 "sender": "admin@chinatax-gov.cn.top", "subject": "【税务局】发票异常核查",
                                 "url": "http://chinatax-check.top/login", "verdict": "phishing",
                                 "action": "blocked"})
    auth.sort(key=lambda r: r["at"])
    dlp.sort(key=lambda r: r["at"])
    mail.sort(key=lambda r: r["at"])
    _write(agency.data_file(*lg.AUTH_LOG), list(lg.LOG_SCHEMAS["auth_log"]), auth)
    _write(agency.data_file(*lg.DLP_LOG), list(lg.LOG_SCHEMAS["dlp_log"]), dlp)
    _write(agency.data_file(*lg.MAIL_CLICKS), list(lg.LOG_SCHEMAS["mail_clicks"]), mail)
    return {"auth_log": len(auth), "dlp_log": len(dlp), "mail_clicks": len(mail), "staff": len(staff_rows)}
