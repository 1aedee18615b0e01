"""Sample office facilities: one site with a UPS and two internet links, a week of ordinary alarm
history (a power blip restored in two minutes, a backup-line flap, weekly UPS self-tests), and a
presence export in which everyone on duty is online (nobody is on duty outside working hours)."""

from __future__ import annotations

import csv
from datetime import datetime, time, timedelta, timezone
from typing import Any

import yaml

from ledgerguard.calendar import is_working_day
from ledgerguard.sources import facilities as src

NAME = "facilities"
SITE = "main"
WORK_START, WORK_END = time(9, 0), time(18, 0)


def generate(ctx) -> dict[str, Any]:
    agency = ctx.agency
    rng = ctx.rng(NAME)
    now = ctx.now.astimezone(timezone.utc)
    local = ctx.local_now
    spec = {"sites": {SITE: {"name": "总部办公室", "address": agency.config.name.replace("有限公司", "") + "办公室",
                             "ups": ["ups-1"], "links": ["isp-telecom", "isp-unicom"],
                             "remote_plan": "VPN + 4G路由器; 离线申报包在前台保险柜"}}}
    path = src.sites_path(agency)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")

    def alarm(at: datetime, source: str, device: str, event: str, detail: str) -> dict[str, Any]:
        return {"at": at.astimezone(timezone.utc).isoformat(timespec="seconds"), "site": SITE, "source": source,
                "device": device, "event": event, "detail": detail}

    blip = now - timedelta(days=3, hours=rng.randint(1, 10))
    flap = now - timedelta(days=2, hours=rng.randint(1, 10))
    alarms = [alarm(now - timedelta(days=d, hours=3), "ups", "ups-1", "self_test_ok", "周自检通过") for d in (7,)]
    alarms += [alarm(blip, "ups", "ups-1", "on_battery", "市电中断，UPS转电池供电"),
               alarm(blip + timedelta(minutes=2), "ups", "ups-1", "power_restored", "市电恢复"),
               alarm(flap, "isp", "isp-unicom", "link_down", "备用线路无响应"),
               alarm(flap + timedelta(minutes=6), "isp", "isp-unicom", "link_up", "备用线路恢复")]
    alarms.sort(key=lambda a: a["at"])
    apath = src.alarms_path(agency)
    apath.write_text("", encoding="utf-8")
    src.append_alarms(agency, alarms)

    working = is_working_day(local.date()) and WORK_START <= local.time() <= WORK_END
    today_in = datetime.combine(local.date(), WORK_START, tzinfo=local.tzinfo)
    ppath = src.presence_path(agency)
    with open(ppath, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=src.PRESENCE_COLUMNS)
        w.writeheader()
        for p in ctx.people:
            if working:
                clock_in = today_in + timedelta(minutes=rng.randint(-20, 15))
                clock_in = min(clock_in, local)
                row = {"clocked_in_at": clock_in.isoformat(timespec="seconds"), "clocked_out_at": "",
                       "last_seen_at": (local - timedelta(minutes=rng.randint(0, 5))).isoformat(timespec="seconds")}
            else:
                day = local.date() if local.time() > WORK_END else local.date() - timedelta(days=1)
                start = datetime.combine(day, WORK_START, tzinfo=local.tzinfo) + timedelta(minutes=rng.randint(-20, 15))
                end = datetime.combine(day, WORK_END, tzinfo=local.tzinfo) + timedelta(minutes=rng.randint(0, 60))
                end = min(end, local)
                start = min(start, end)
                row = {"clocked_in_at": start.isoformat(timespec="seconds"),
                       "clocked_out_at": end.isoformat(timespec="seconds"),
                       "last_seen_at": end.isoformat(timespec="seconds")}
            w.writerow({"staff_id": p["id"], "site": SITE, "exported_at": local.isoformat(timespec="seconds"), **row})
    return {"site": SITE, "alarms": len(alarms), "staff": len(ctx.people), "on_duty": working}
