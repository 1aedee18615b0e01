"""The file-share monitor: file events as a file-server monitor exports them, the share folders
themselves (ransom-note scan), SQLite headers of the client ledgers, EDR alerts and the list of
isolated hosts.

Files (relative to the agency folder; ``data_files:`` in agency.yaml may move them):

``fileshare/`` (``fileshare_root``): one folder per share, e.g. ``fileshare/bookkeeping/``
(resource ``fileserver:bookkeeping``); client folders inside are named by client id.

``fileshare/events.jsonl`` (``file_events``), JSONL or CSV, one row per file event::

    {"at": "2026-11-05T02:10:03+08:00", "host": "FS01", "user": "svc_sync", "share": "bookkeeping",
     "event": "rename", "path": "C0001/凭证/2026-10.pdf", "new_path": "C0001/凭证/2026-10.pdf.locked"}
    ``event``: create | modify | rename | delete; paths are relative to the share.

``fileshare/edr-alerts.jsonl`` (``edr_alerts``): ``at, host, severity (low|medium|high|critical),
rule, process, action (blocked|quarantined|detected)``.

``it/isolated-hosts.json`` (``isolated_hosts``): ``{"hosts": {"FS01": {"isolated_at": …,
"incident": …, "reason": …}}}`` — written by the ``host.isolate`` action. The monitor honours
it: events of a host after its isolation are flagged ``isolated`` and never count as activity
of an attacker who is still active.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.sources import logs as lg

__all__ = ["EDR_ALERTS", "FILE_EVENTS", "ISOLATED_HOSTS", "SHARES_ROOT", "SQLITE_HEADER", "EVENT_COLUMNS",
           "EDR_COLUMNS", "LedgerHeader", "append_events", "client_of_path", "extension", "isolated_hosts",
           "ledger_headers", "parse_share", "read_edr_alerts", "read_events", "scan_ransom_notes",
           "share_path", "write_isolated_hosts"]

SHARES_ROOT = ("fileshare_root", "fileshare")
FILE_EVENTS = ("file_events", "fileshare/events.jsonl")
EDR_ALERTS = ("edr_alerts", "fileshare/edr-alerts.jsonl")
ISOLATED_HOSTS = ("isolated_hosts", "it/isolated-hosts.json")
SQLITE_HEADER = b"SQLite format 3\x00"

EVENT_SCHEMA = {"at": "at", "host": "str", "user": "str", "share": "str", "event": "str", "path": "str",
                "new_path": "str"}
EVENT_COLUMNS = list(EVENT_SCHEMA)
EDR_SCHEMA = {"at": "at", "host": "str", "severity": "str", "rule": "str", "process": "str", "action": "str"}
EDR_COLUMNS = list(EDR_SCHEMA)


def parse_share(resource: str) -> str:
    if not resource.startswith("fileserver:") or not resource[len("fileserver:"):]:
        raise ValueError(f"resource {resource!r} is not of the form fileserver:<share>")
    return resource[len("fileserver:"):]


def share_path(agency, share: str, *, must_exist: bool = True) -> Path:
    root = agency.data_file(*SHARES_ROOT)
    path = (root / share).resolve()
    if root.resolve() not in path.parents:
        raise ValueError(f"share {share!r} is not a folder under {root}")
    if must_exist and not path.is_dir():
        shares = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise AgencyDataError(root, f"no share folder {share!r}; shares: {', '.join(shares) or 'none'}",
                              field="share")
    return path


def extension(paths: pd.Series) -> pd.Series:
    """The last suffix of each path, lower case, with the dot (``''`` when none)."""
    name = paths.str.rsplit("/", n=1).str[-1]
    ext = name.str.extract(r"(\.[^./\\]+)$", expand=False)
    return ext.fillna("").str.lower()


def client_of_path(paths: pd.Series) -> pd.Series:
    """The first path segment that looks like a client id (``C0001``), else ''."""
    first = paths.str.extract(r"(?:^|/)(C\d{4,})(?:/|$)", expand=False)
    return first.fillna("")


# --------------------------------------------------------------------------- isolation
def isolated_hosts(agency) -> dict[str, dict[str, Any]]:
    path = agency.data_file(*ISOLATED_HOSTS)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise AgencyDataError(path, f"not valid JSON: {exc}") from None
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, dict):
        raise AgencyDataError(path, "expected {\"hosts\": {<host>: {isolated_at: …}}}", field="hosts")
    return hosts


def write_isolated_hosts(agency, hosts: dict[str, dict[str, Any]]) -> Path:
    path = agency.data_file(*ISOLATED_HOSTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"hosts": hosts}, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- events
def read_events(agency, *, share: str | None = None, since: datetime | None = None,
                until: datetime | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """File events (typed, sorted), optionally of one share, with an ``isolated`` column: the
    host had been isolated (it/isolated-hosts.json) when the event happened."""
    path = agency.data_file(*FILE_EVENTS)
    cols = list(dict.fromkeys(["at", "host", "share", *(columns or EVENT_COLUMNS)]))
    df = lg.read_typed(agency, path, EVENT_SCHEMA, name="file_events", columns=cols, since=since, until=until)
    if share is not None:
        df = df[df["share"] == share].reset_index(drop=True)
    hosts = isolated_hosts(agency)
    isolated = pd.Series(False, index=df.index)
    for host, info in hosts.items():
        at = pd.Timestamp(info.get("isolated_at")) if info.get("isolated_at") else None
        if at is not None and at.tzinfo is None:
            at = at.tz_localize(agency.tz)
        mine = df["host"] == host
        isolated |= mine if at is None else (mine & (df["at"] >= at))
    df["isolated"] = isolated
    return df


def append_events(agency, rows: list[dict[str, Any]]) -> Path:
    return lg.append_rows(agency, FILE_EVENTS, rows, columns=EVENT_COLUMNS)


def read_edr_alerts(agency, *, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    path = agency.data_file(*EDR_ALERTS)
    return lg.read_typed(agency, path, EDR_SCHEMA, name="edr_alerts", since=since, until=until)


# --------------------------------------------------------------------------- folders and headers
def scan_ransom_notes(folder: Path, patterns: Iterable[str], *, limit: int = 10_000) -> list[Path]:
    """Files under ``folder`` whose name matches one of ``patterns`` (case-insensitive glob)."""
    pats = [p.lower() for p in patterns]
    found: list[Path] = []
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            low = name.lower()
            if any(fnmatch.fnmatchcase(low, p) for p in pats):
                found.append(Path(dirpath) / name)
                if len(found) >= limit:
                    return sorted(found)
    return sorted(found)


@dataclass
class LedgerHeader:
    client_id: str
    path: Path
    exists: bool
    ok: bool
    header_hex: str

    def to_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "path": str(self.path), "exists": self.exists, "ok": self.ok,
                "header_hex": self.header_hex}


def ledger_headers(agency, client_ids: Iterable[str] | None = None) -> list[LedgerHeader]:
    """The first 16 bytes of each client ledger vs the SQLite magic header."""
    out = []
    for cid in client_ids if client_ids is not None else agency.client_ids:
        path = agency.ledger_path(cid)
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except FileNotFoundError:
            out.append(LedgerHeader(cid, path, False, False, ""))
            continue
        out.append(LedgerHeader(cid, path, True, head == SQLITE_HEADER, head.hex()))
    return out
