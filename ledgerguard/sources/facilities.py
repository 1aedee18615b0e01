"""Office facilities: the sites, UPS/ISP alarm exports and the staff-presence export.

Files (relative to the agency folder; ``data_files:`` in agency.yaml may move them):

``facilities/sites.yaml`` (``facility_sites``)
    ``sites: {main: {name: 总部, ups: [ups-1], links: [isp-telecom, isp-unicom]}}``
``facilities/alarms.jsonl`` (``facility_alarms``), one JSON object a line, as UPS/ISP monitoring
    exports them: ``{"at": ISO, "site": "main", "source": "ups"|"isp", "device": "ups-1",
    "event": "on_battery"|"battery_low"|"power_restored"|"self_test_ok"|"link_down"|"link_up",
    "detail": "..."}``
``facilities/presence.csv`` (``staff_presence``): ``staff_id,site,clocked_in_at,clocked_out_at,
    last_seen_at,exported_at`` — attendance (clock-in/out) and last-seen of each staff member's
    devices, as the presence system saw them at ``exported_at``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.sources import jsonl_objects, read_text_csv

SITES_FILE = ("facility_sites", "facilities/sites.yaml")
ALARMS_FILE = ("facility_alarms", "facilities/alarms.jsonl")
PRESENCE_FILE = ("staff_presence", "facilities/presence.csv")
PRESENCE_COLUMNS = ["staff_id", "site", "clocked_in_at", "clocked_out_at", "last_seen_at", "exported_at"]

DOWN_EVENTS = {"ups": {"on_battery", "battery_low", "shutdown"}, "isp": {"link_down"}}
UP_EVENTS = {"ups": {"power_restored", "self_test_ok", "online"}, "isp": {"link_up"}}
SOURCES = set(DOWN_EVENTS)


def sites_path(agency) -> Path:
    return agency.data_file(*SITES_FILE)


def alarms_path(agency) -> Path:
    return agency.data_file(*ALARMS_FILE)


def presence_path(agency) -> Path:
    return agency.data_file(*PRESENCE_FILE)


def load_sites(agency) -> dict[str, dict[str, Any]]:
    path = sites_path(agency)
    if not path.is_file():
        raise AgencyDataError(path, "file not found (the agency's office sites)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AgencyDataError(path, f"not valid YAML: {exc}") from None
    sites = raw.get("sites") if isinstance(raw, dict) else None
    if not isinstance(sites, dict) or not sites:
        raise AgencyDataError(path, "expected sites: a mapping of site id to its devices", field="sites")
    for sid, site in sites.items():
        if not isinstance(site, dict):
            raise AgencyDataError(path, f"site {sid!r}: expected a mapping", field=f"sites.{sid}")
        for key in ("ups", "links"):
            value = site.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise AgencyDataError(path, f"site {sid!r}: {key} must be a list of device names",
                                      field=f"sites.{sid}.{key}")
            site[key] = value
    return {str(k): v for k, v in sites.items()}


def site(agency, site_id: str) -> dict[str, Any]:
    sites = load_sites(agency)
    if site_id == "default" and len(sites) == 1:
        site_id = next(iter(sites))
    if site_id not in sites:
        raise AgencyDataError(sites_path(agency), f"unknown site {site_id!r}; sites: {', '.join(sites)}",
                              field="sites")
    return {"id": site_id, **sites[site_id]}


def read_alarms(agency) -> pd.DataFrame:
    """The alarm export: at (UTC), site, source, device, event, detail, line. Bad lines name the line."""
    path = alarms_path(agency)
    rows = []
    for n, obj in jsonl_objects(path, "the UPS/ISP alarm export"):
        for key in ("at", "site", "source", "device", "event"):
            if not obj.get(key):
                raise AgencyDataError(path, f"line {n}: {key} missing", field=key)
        if obj["source"] not in SOURCES:
            raise AgencyDataError(path, f"line {n}: source {obj['source']!r} is not one of "
                                        f"{', '.join(sorted(SOURCES))}", field="source")
        known = DOWN_EVENTS[obj["source"]] | UP_EVENTS[obj["source"]]
        if obj["event"] not in known:
            raise AgencyDataError(path, f"line {n}: event {obj['event']!r} unknown for {obj['source']}; "
                                        f"known: {', '.join(sorted(known))}", field="event")
        try:
            at = pd.Timestamp(obj["at"])
        except (ValueError, TypeError):
            at = None
        if at is None or at.tzinfo is None:
            raise AgencyDataError(path, f"line {n}: {obj['at']!r} is not an ISO timestamp with a time zone",
                                  field="at")
        rows.append({"at": at.tz_convert("UTC"), "site": str(obj["site"]), "source": obj["source"],
                     "device": str(obj["device"]), "event": obj["event"], "detail": str(obj.get("detail", "")),
                     "line": n})
    cols = ["at", "site", "source", "device", "event", "detail", "line"]
    return pd.DataFrame(rows, columns=cols)


def append_alarms(agency, alarms: list[dict[str, Any]]) -> None:
    path = alarms_path(agency)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for a in alarms:
            fh.write(json.dumps(a, ensure_ascii=False) + "\n")


def remove_alarm_lines(agency, alarms: list[dict[str, Any]]) -> None:
    """Drop exactly these alarm objects (one occurrence each) from the export."""
    path = alarms_path(agency)
    wanted = [json.dumps(a, ensure_ascii=False, sort_keys=True) for a in alarms]
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key = json.dumps(json.loads(line), ensure_ascii=False, sort_keys=True)
            if key in wanted:
                wanted.remove(key)
                continue
        kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(kept) + ("\n" if kept else ""), encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class DeviceState:
    device: str
    source: str
    down: bool
    since: datetime | None          # first down event of the current down run
    last_event: str | None
    last_event_at: datetime | None
    events: list[dict[str, Any]]    # the current down run's events (evidence)


def device_states(alarms: pd.DataFrame, site_id: str, source: str, devices: list[str],
                  now: datetime) -> list[DeviceState]:
    """Per device: is it down now (its newest event up to ``now`` is a down event), since when."""
    sel = alarms[(alarms["site"] == site_id) & (alarms["source"] == source) & (alarms["at"] <= pd.Timestamp(now))]
    out = []
    for device in list(dict.fromkeys(list(devices) + list(sel["device"]))):
        rows = sel[sel["device"] == device].sort_values("at", kind="stable")
        if rows.empty:
            out.append(DeviceState(device, source, False, None, None, None, []))
            continue
        down_flags = rows["event"].isin(DOWN_EVENTS[source]).to_numpy()
        i = len(rows)
        while i > 0 and down_flags[i - 1]:
            i -= 1
        run = rows.iloc[i:]
        last = rows.iloc[-1]
        out.append(DeviceState(
            device=device, source=source, down=not run.empty,
            since=run["at"].iloc[0].to_pydatetime() if not run.empty else None,
            last_event=last["event"], last_event_at=last["at"].to_pydatetime(),
            events=[{"at": r.at.isoformat(), "event": r.event, "detail": r.detail, "line": int(r.line)}
                    for r in run.itertuples(index=False)]))
    return out


def read_presence(agency) -> pd.DataFrame:
    path = presence_path(agency)
    df = read_text_csv(path, "the staff presence export", PRESENCE_COLUMNS)
    for col in ("clocked_in_at", "clocked_out_at", "last_seen_at", "exported_at"):
        parsed = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
        required = col == "exported_at"
        bad = parsed.isna() & ((df[col].str.strip() != "") | required)
        if bad.any():
            i = int(bad.idxmax())
            raise AgencyDataError(path, f"line {i + 2}: {df.at[i, col]!r} is not an ISO timestamp", field=col)
        df[col] = parsed
    df["line"] = range(2, len(df) + 2)
    return df


def write_presence(path: Path, df: pd.DataFrame) -> None:
    out = df.copy()
    for col in ("clocked_in_at", "clocked_out_at", "last_seen_at", "exported_at"):
        out[col] = out[col].map(lambda v: "" if pd.isna(v) else pd.Timestamp(v).isoformat())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out[PRESENCE_COLUMNS].to_csv(tmp, index=False, encoding="utf-8")
    os.replace(tmp, path)
