"""A healthy bookkeeping file share: ``fileshare/bookkeeping/<client>/…`` with a few documents per
client, a week of ordinary file events (creates, edits, Office's save-via-rename of ``~$tmp``
files) and an EDR alert export with only low-severity, blocked alerts."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import Any

from ledgerguard.sources import fileshare as fs

NAME = "fileshare"
SHARE = "bookkeeping"
DOCS = ["凭证扫描/{m}-银行回单.pdf", "报表/{m}-资产负债表.xlsx", "工资/{m}-工资表.xlsx", "发票/{m}-进项发票.pdf",
        "合同/服务合同.docx"]


def generate(ctx) -> dict[str, Any]:
    rng = ctx.rng(NAME)
    agency = ctx.agency
    tz = ctx.tz
    now = ctx.local_now
    share_dir = agency.data_file(*fs.SHARES_ROOT) / SHARE
    share_dir.mkdir(parents=True, exist_ok=True)
    month = f"{now.year}-{now.month:02d}"
    files = []
    for cid in agency.client_ids:
        for doc in rng.sample(DOCS, 3):
            rel = f"{cid}/{doc.format(m=month)}"
            p = share_dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(f"{cid} {doc}\n".encode("utf-8"))
            files.append(rel)
    events = []
    hosts = ["FS01"] + [f"PC-{i:02d}" for i in range(1, 8)]
    for back in range(7, -1, -1):
        day = now.date() - timedelta(days=back)
        for _ in range(rng.randint(20, 60)):
            at = datetime.combine(day, time(9, 0), tzinfo=tz) + timedelta(minutes=rng.randint(0, 540))
            if at > now:
                continue
            rel = rng.choice(files)
            kind = rng.choice(["modify", "modify", "create", "rename"])
            if kind == "rename":
                tmp = rel.rsplit("/", 1)[0] + "/~$tmp" + str(rng.randint(1000, 9999)) + ".tmp"
                events.append({"at": at.isoformat(timespec="seconds"), "host": rng.choice(hosts),
                               "user": "staff", "share": SHARE, "event": "rename", "path": tmp, "new_path": rel})
            else:
                events.append({"at": at.isoformat(timespec="seconds"), "host": rng.choice(hosts),
                               "user": "staff", "share": SHARE, "event": kind, "path": rel, "new_path": ""})
    events.sort(key=lambda e: e["at"])
    log = agency.data_file(*fs.FILE_EVENTS)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")
    alerts = []
    for back in (5, 2):
        at = datetime.combine(now.date() - timedelta(days=back), time(14, 12), tzinfo=tz)
        alerts.append({"at": at.isoformat(timespec="seconds"), "host": rng.choice(hosts[1:]), "severity": "low",
                       "rule": "PUA.Adware.Bundler", "process": "setup_pdfreader.exe", "action": "blocked"})
    edr = agency.data_file(*fs.EDR_ALERTS)
    with open(edr, "w", encoding="utf-8") as fh:
        for a in alerts:
            fh.write(json.dumps(a, ensure_ascii=False) + "\n")
    return {"share": str(share_dir), "files": len(files), "events": len(events), "edr_alerts": len(alerts)}
