"""Office facility detectors (emergency type ``office_outage``, resource ``office:<site>``): UPS and
ISP alarms from the monitoring exports, and staff offline from the presence export; with their
paired drill injectors."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
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
from ledgerguard.detectors.probes import next_deadline_facts, resource_name
from ledgerguard.models import EvidenceItem
from ledgerguard.sources import facilities as src

OFFICE = "office_outage"


def _local(agency, at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(agency.tz).strftime("%Y-%m-%d %H:%M")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(timezone.utc).isoformat(timespec="seconds")


def _alarm_finding(det: Detector, ctx: DetectionContext, source: str, key: str) -> DetectorResult:
    agency = ctx.agency
    site = src.site(agency, resource_name(ctx.resource, "office"))
    devices = site.get(key, [])
    alarms = src.read_alarms(agency)
    path = src.alarms_path(agency)
    states = src.device_states(alarms, site["id"], source, devices, ctx.now)
    down = [s for s in states if s.down]
    what = "UPS" if source == "ups" else "internet link"
    if not states:
        return DetectorResult.clear(f"site {site['id']} has no {what} configured or alarmed")
    require_all = bool(ctx.params.get("require_all", source == "isp"))
    if not down or (require_all and len(down) < len(states)):
        parts = [f"{s.device}: {'DOWN since ' + _local(agency, s.since) if s.down else (s.last_event or 'no alarms')}"
                 for s in states]
        extra = " (a backup is up)" if down else ""
        return DetectorResult.clear(f"site {site['id']} {what}s: " + "; ".join(parts) + extra)
    since = min(s.since for s in down)
    minutes = round((ctx.now - since).total_seconds() / 60, 1)
    min_minutes = float(ctx.params.get("min_minutes", 0))
    if minutes < min_minutes:
        return DetectorResult.clear(f"site {site['id']}: {what} down for {minutes:.0f} min, below {min_minutes:g} min")
    facts = base_facts(agency, [])
    facts.update(next_deadline_facts(ctx.now, ctx.params.get("calendar_file")))
    facts.update(site=site["id"], outage_minutes=minutes, outage_started_at=_iso(since),
                 devices_down=[s.device for s in down], devices_total=len(states))
    if source == "ups":
        facts.update(power_outage=True, battery_low=any(e["event"] == "battery_low" for s in down for e in s.events))
    else:
        facts.update(network_outage=True, links_down=len(down), all_links_down=len(down) == len(states))
    evidence = [EvidenceItem(kind="log_line", description=f"{s.device} {e['event']} {e['detail']}".strip(),
                             path=f"{path}:{e['line']}", observed_at=pd.Timestamp(e["at"]).to_pydatetime(),
                             data={"device": s.device, **e}) for s in down for e in s.events]
    return det.finding(ctx, f"site {site['id']}: {', '.join(s.device for s in down)} "
                            f"{'on battery' if source == 'ups' else 'down'} since {_local(agency, since)} "
                            f"({minutes:.0f} min)", facts, evidence)


@register_detector
class UpsAlarmDetector(Detector):
    """A UPS of the site is on battery (or low) with no power_restored since."""

    id = "facility.ups_alarm"
    emergency_type = OFFICE
    description = "UPS alarm export: on_battery / battery_low without power_restored"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        return _alarm_finding(self, ctx, "ups", "ups")


@register_detector
class IspAlarmDetector(Detector):
    """Every internet link of the site is down (``require_all: false``: any link)."""

    id = "facility.isp_alarm"
    emergency_type = OFFICE
    description = "ISP/router alarm export: link_down without link_up"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        return _alarm_finding(self, ctx, "isp", "links")


@register_detector
class StaffOfflineDetector(Detector):
    """Share of staff on duty (clocked in, not out) not seen for offline_minutes ≥ min_pct."""

    id = "facility.staff_offline"
    emergency_type = OFFICE
    description = "presence export: staff on duty whose devices were last seen more than offline_minutes ago"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        site = src.site(agency, resource_name(ctx.resource, "office"))
        min_pct = float(ctx.params.get("min_pct", 30))
        offline_minutes = float(ctx.params.get("offline_minutes", 15))
        df = src.read_presence(agency)
        path = src.presence_path(agency)
        rows = df[(df["site"] == site["id"]) & (df["exported_at"] <= pd.Timestamp(ctx.now))]
        if rows.empty:
            return DetectorResult.clear(f"no presence rows for site {site['id']} in {path.name}")
        on_duty = rows[rows["clocked_in_at"].notna() & rows["clocked_out_at"].isna()]
        exported = rows["exported_at"].max().to_pydatetime()
        if on_duty.empty:
            return DetectorResult.clear(f"site {site['id']}: nobody on duty at {_local(agency, exported)} "
                                        f"({len(rows)} staff, all clocked out or not in)")
        silent = (on_duty["exported_at"] - on_duty["last_seen_at"]).dt.total_seconds() / 60
        offline = on_duty[on_duty["last_seen_at"].isna() | (silent > offline_minutes)]
        pct = round(100 * len(offline) / len(on_duty), 1)
        if pct < min_pct:
            return DetectorResult.clear(f"site {site['id']}: {len(offline)} of {len(on_duty)} staff on duty "
                                        f"offline ({pct:g} % < {min_pct:g} %) at {_local(agency, exported)}")
        seen = offline["last_seen_at"].dropna()
        facts = base_facts(agency, [])
        facts.update(next_deadline_facts(ctx.now, ctx.params.get("calendar_file")))
        facts.update(site=site["id"], staff_offline_pct=pct, staff_offline=len(offline), staff_on_duty=len(on_duty),
                     offline_staff=sorted(offline["staff_id"]), presence_exported_at=_iso(exported))
        if not seen.empty:
            # the latest any of them was seen: a lower bound of how long the office has been cut off
            facts["outage_minutes"] = round((exported - seen.max().to_pydatetime()).total_seconds() / 60, 1)
        evidence = [EvidenceItem(kind="log_line", path=f"{path}:{r.line}",
                                 description=f"{r.staff_id} on duty since {_local(agency, r.clocked_in_at.to_pydatetime())}, "
                                             f"last seen {_local(agency, None if pd.isna(r.last_seen_at) else r.last_seen_at.to_pydatetime())}",
                                 data={"staff_id": r.staff_id, "last_seen_at": None if pd.isna(r.last_seen_at)
                                       else _iso(r.last_seen_at.to_pydatetime()),
                                       "clocked_in_at": _iso(r.clocked_in_at.to_pydatetime())})
                    for r in offline.itertuples(index=False)]
        return self.finding(ctx, f"site {site['id']}: {len(offline)} of {len(on_duty)} staff on duty offline "
                                 f"({pct:g} %) at {_local(agency, exported)}", facts, evidence)


# --------------------------------------------------------------------------- injectors
def _alarm(at: datetime, site: str, source: str, device: str, event: str, detail: str) -> dict[str, Any]:
    return {"at": at.astimezone(timezone.utc).isoformat(timespec="seconds"), "site": site, "source": source,
            "device": device, "event": event, "detail": detail}


class _AlarmInjector(Injector):
    source = ""
    key = ""

    def _alarms(self, site: dict[str, Any], start: datetime, now: datetime, **kw: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def inject(self, ctx: InjectionContext, *, minutes: float = 30, **kw: Any) -> InjectionReport:
        site = src.site(ctx.agency, resource_name(ctx.resource, "office"))
        start = ctx.now - timedelta(minutes=float(minutes))
        alarms = self._alarms(site, start, ctx.now, **kw)
        src.append_alarms(ctx.agency, alarms)
        return InjectionReport(injector=self.id, resource=ctx.resource, detector=self.detector,
                               summary=f"{len(alarms)} {self.source} alarm(s) at site {site['id']} from "
                                       f"{float(minutes):g} min ago", changes={"alarms": alarms},
                               undo={"alarms": alarms})

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        src.remove_alarm_lines(ctx.agency, report.undo["alarms"])


@register_injector
class PowerCutInjector(_AlarmInjector):
    """Every UPS of the site goes on battery ``minutes`` ago (battery_low later if asked)."""

    id = "facility.inject_power_cut"
    emergency_type = OFFICE
    detector = "facility.ups_alarm"
    source = "ups"

    def _alarms(self, site, start, now, battery_low: bool = False, **_: Any):
        out = [_alarm(start, site["id"], "ups", d, "on_battery", "市电中断，UPS转电池供电") for d in site["ups"]]
        if battery_low:
            mid = start + (now - start) / 2
            out += [_alarm(mid, site["id"], "ups", d, "battery_low", "电池电量低于20%") for d in site["ups"]]
        return out


@register_injector
class IspDownInjector(_AlarmInjector):
    """Every internet link of the site goes down ``minutes`` ago."""

    id = "facility.inject_isp_down"
    emergency_type = OFFICE
    detector = "facility.isp_alarm"
    source = "isp"

    def _alarms(self, site, start, now, **_: Any):
        return [_alarm(start, site["id"], "isp", d, "link_down", "WAN口无响应（光猫LOS告警）") for d in site["links"]]


@register_injector
class StaffOfflineInjector(Injector):
    """``pct`` % of the site's staff on duty not seen for ``minutes`` (everyone clocked in first
    when nobody is on duty, e.g. at night)."""

    id = "facility.inject_staff_offline"
    emergency_type = OFFICE
    detector = "facility.staff_offline"

    def inject(self, ctx: InjectionContext, *, pct: float = 60, minutes: float = 30, **_: Any) -> InjectionReport:
        agency = ctx.agency
        site = src.site(agency, resource_name(ctx.resource, "office"))
        path = src.presence_path(agency)
        before = path.read_text(encoding="utf-8")
        df = src.read_presence(agency)
        here = df.index[df["site"] == site["id"]]
        now = pd.Timestamp(ctx.now)
        on = df.loc[here, "clocked_in_at"].notna() & df.loc[here, "clocked_out_at"].isna()
        if not on.any():
            df.loc[here, "clocked_in_at"] = now - pd.Timedelta(hours=2)
            df.loc[here, "clocked_out_at"] = pd.NaT
        df.loc[here, "exported_at"] = now
        df.loc[here, "last_seen_at"] = now - pd.Timedelta(minutes=1)
        n = math.ceil(len(here) * float(pct) / 100)
        chosen = list(here[:n])
        df.loc[chosen, "last_seen_at"] = now - pd.Timedelta(minutes=float(minutes))
        src.write_presence(path, df)
        return InjectionReport(injector=self.id, resource=ctx.resource, detector=self.detector,
                               summary=f"{n} of {len(here)} staff at site {site['id']} not seen for {float(minutes):g} min",
                               changes={"offline_staff": list(df.loc[chosen, "staff_id"]), "staff": len(here)},
                               undo={"path": str(path), "before": before})

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        Path(report.undo["path"]).write_text(report.undo["before"], encoding="utf-8")


__all__ = ["UpsAlarmDetector", "IspAlarmDetector", "StaffOfflineDetector", "PowerCutInjector", "IspDownInjector",
           "StaffOfflineInjector"]
