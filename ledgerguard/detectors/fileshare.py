"""Ransomware detectors (emergency type ``ransomware``, resource ``fileserver:<share>``) over the
file-share monitor's data, and their paired injectors.

Facts common to every finding here: the clients whose files or ledgers were hit, the personal
data inside (the ledgers hold payroll: people = the clients' ``employees``), and the restore
position: the newest good backup taken *before* the first malicious event (a clean one), its
age against the RPO.
"""

from __future__ import annotations

import fnmatch
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from ledgerguard import backups as bk
from ledgerguard.detectors.base import (
    DetectionContext,
    Detector,
    DetectorResult,
    InjectionContext,
    InjectionReport,
    Injector,
    base_facts,
    hours,
    register_detector,
    register_injector,
)
from ledgerguard.models import EvidenceItem
from ledgerguard.sources import fileshare as fs
from ledgerguard.sources import logs as lg

EMERGENCY_TYPE = "ransomware"
PAYROLL_PII = ["id_number", "bank_card", "salary", "name"]
DEFAULT_NOTES = ["README_DECRYPT*", "*DECRYPT*.txt", "*RESTORE_FILES*"]


def clean_backup(agency, before: datetime | None) -> bk.BackupSet | None:
    """The newest good backup set taken before ``before`` (the first malicious event)."""
    for s in bk.list_backup_sets(agency):
        if s.good and (before is None or s.taken_at < before):
            return s
    return None


def ransom_facts(ctx: DetectionContext, clients: list[str], first_bad: datetime | None) -> dict[str, Any]:
    """Clients, payroll PII, and the clean-backup position against the RPO."""
    agency = ctx.agency
    clients = [c for c in dict.fromkeys(clients) if agency.has_client(c)]
    emp = agency.clients.set_index("client_id")["employees"]
    people = int(emp.reindex(clients).fillna(0).sum())
    facts = base_facts(agency, clients, pii_tampered=bool(people))
    rpo = float(ctx.params.get("rpo_hours") or agency.config.rpo_hours)
    s = clean_backup(agency, first_bad)
    facts.update(ransomware=True, suspected_crime=True, pii_people=people,
                 pii_kinds=PAYROLL_PII if people else [], rpo_hours=rpo,
                 clean_backup_available=s is not None,
                 backup_age_hours=hours(s.age_hours(ctx.now)) if s else None,
                 clean_backup_set=s.stamp if s else None,
                 first_malicious_at=first_bad.isoformat() if first_bad else None)
    if people:
        facts["agency_role"] = "entrusted"  # clients' employees' payroll
    if s is not None:
        facts["rpo_breached"] = facts["backup_age_hours"] > rpo
        facts["control_failure"] = facts["rpo_breached"]
    return facts


def _share(ctx: DetectionContext) -> tuple[str, Path]:
    share = fs.parse_share(ctx.resource)
    return share, fs.share_path(ctx.agency, share)


def _lookback(ctx: DetectionContext, default: float = 24) -> tuple[float, datetime]:
    h = float(ctx.params.get("lookback_hours") or default)
    return h, ctx.now - timedelta(hours=h)


def _unreadable_clients(agency) -> list[fs.LedgerHeader]:
    return [h for h in fs.ledger_headers(agency) if h.exists and not h.ok]


@register_detector
class MassRenameDetector(Detector):
    """≥ ``min_files`` renames to one new extension within ``window_minutes``."""

    id = "files.mass_rename"
    emergency_type = EMERGENCY_TYPE
    description = "file-event log: renames to one new extension per sliding window_minutes vs min_files"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        share, _ = _share(ctx)
        minutes = float(ctx.params.get("window_minutes") or 10)
        min_files = int(ctx.params.get("min_files") or 500)
        lb, since = _lookback(ctx)
        path = agency.data_file(*fs.FILE_EVENTS)
        ev = fs.read_events(agency, share=share, since=since, until=ctx.now)
        ren = ev[ev["event"] == "rename"]
        new_ext = fs.extension(ren["new_path"])
        changed = ren[new_ext != fs.extension(ren["path"])].assign(new_ext=new_ext)
        changed = changed[changed["new_ext"] != ""]
        if changed.empty:
            return DetectorResult.clear(f"{path.name}: no rename to a new extension on share {share} in the last "
                                        f"{lb:g} h ({len(ev)} events)")
        from ledgerguard.detectors.logs import rolling_max

        peak = rolling_max(changed, "new_ext", minutes)
        ext, top = peak.idxmax(), int(peak.max())
        if top < min_files:
            return DetectorResult.clear(f"{path.name}: at most {top} renames to {ext} within {minutes:g} min on "
                                        f"share {share} (< {min_files})")
        hit = changed[changed["new_ext"] == ext]
        clients = [c for c in fs.client_of_path(hit["new_path"]).unique().tolist() if c]
        clients += [h.client_id for h in _unreadable_clients(agency)]
        first, last = hit["at"].min(), hit["at"].max()
        facts = ransom_facts(ctx, clients, first.to_pydatetime())
        active_min = float(ctx.params.get("active_minutes") or 30)
        # A host on the isolation list is cut off: its encryption is no longer "active".
        isolated = set(fs.isolated_hosts(agency))
        live = hit[~hit["isolated"] & ~hit["host"].isin(isolated)]
        facts.update(encrypted_files=len(hit), files_renamed=len(hit), new_extension=ext,
                     peak_renames_in_window=top, window_minutes=minutes,
                     hosts_affected=int(hit["host"].nunique()), hosts=sorted(set(hit["host"])),
                     users=sorted(set(hit["user"]))[:20], first_rename_at=first.isoformat(),
                     last_rename_at=last.isoformat(),
                     hosts_isolated=sorted(set(hit["host"]) & isolated),
                     attacker_active=bool(len(live)) and (ctx.now - live["at"].max()) <= timedelta(minutes=active_min))
        summary = (f"{len(hit):,} files on share {share} renamed to *{ext} ({top:,} within {minutes:g} min) "
                   f"from {', '.join(facts['hosts'])} between {first:%H:%M} and {last:%H:%M} UTC; "
                   f"{facts['clients_affected']} clients")
        evidence = [EvidenceItem(kind="log_line", description=f"renames to {ext}", path=str(path),
                                 data={"count": len(hit), "first": hit.head(10)[["at", "host", "path", "new_path"]]
                                       .astype(str).to_dict(orient="records")})]
        return self.finding(ctx, summary, facts, evidence)


@register_detector
class RansomNoteDetector(Detector):
    """A ransom-note file in the share folder (a real scan), or created per the event log."""

    id = "files.ransom_note"
    emergency_type = EMERGENCY_TYPE
    description = "ransom-note file names (patterns) in the share folder and in create events"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        share, folder = _share(ctx)
        patterns = list(ctx.params.get("patterns") or DEFAULT_NOTES)
        found = fs.scan_ransom_notes(folder, patterns)
        lb, since = _lookback(ctx)
        ev = fs.read_events(agency, share=share, since=since, until=ctx.now)
        created = ev[ev["event"].isin(["create", "modify", "rename"])]
        names = created["new_path"].where(created["new_path"] != "", created["path"]).str.rsplit("/", n=1).str[-1]
        low = names.str.lower()
        mask = pd.Series(False, index=created.index)
        for p in patterns:
            mask |= low.map(lambda n, p=p.lower(): fnmatch.fnmatchcase(n, p)).astype(bool)
        logged = created[mask]
        if not found and logged.empty:
            return DetectorResult.clear(f"no file matching {', '.join(patterns)} under {folder} nor in the "
                                        f"file events of the last {lb:g} h")
        rel = [str(p.relative_to(folder)) for p in found]
        clients = [c for c in fs.client_of_path(pd.Series(rel, dtype=str)).tolist() if c]
        clients += [h.client_id for h in _unreadable_clients(agency)]
        first = logged["at"].min().to_pydatetime() if len(logged) else None
        facts = ransom_facts(ctx, clients, first)
        facts.update(ransom_note=True, ransom_note_paths=[str(p) for p in found[:50]],
                     ransom_notes_found=len(found), ransom_notes_logged=len(logged),
                     hosts_affected=int(logged["host"].nunique()) if len(logged) else 1)
        evidence = [EvidenceItem(kind="file", description="ransom note", path=str(p),
                                 data={"bytes": p.stat().st_size, "sha256": bk.sha256_file(p),
                                       "head": p.read_text(encoding="utf-8", errors="replace")[:300]})
                    for p in found[:5]]
        return self.finding(ctx, f"{len(found)} ransom note(s) on share {share} "
                                 f"({', '.join(sorted({p.name for p in found}) or ['logged only'])})", facts, evidence)


@register_detector
class LedgerUnreadableDetector(Detector):
    """Client ledgers whose first 16 bytes are no longer the SQLite header."""

    id = "ledger.db_unreadable"
    emergency_type = EMERGENCY_TYPE
    description = "SQLite magic header (16 bytes) of every client ledger under agency.ledgers_path"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        fs.parse_share(ctx.resource)
        heads = fs.ledger_headers(agency)
        bad = [h for h in heads if h.exists and not h.ok]
        missing = [h for h in heads if not h.exists]
        if not bad:
            return DetectorResult.clear(f"all {len(heads) - len(missing)} ledgers under {agency.ledgers_path} start "
                                        f"with the SQLite header" + (f" ({len(missing)} missing: ledger.row_count_drop "
                                                                    f"reports those)" if missing else ""))
        # When the header changed: the file's mtime (never later than the detection time).
        changed = min(min(datetime.fromtimestamp(h.path.stat().st_mtime).astimezone() for h in bad), ctx.now)
        facts = ransom_facts(ctx, [h.client_id for h in bad], changed)
        facts.update(ledgers_unreadable=len(bad), unreadable_clients=[h.client_id for h in bad],
                     ledgers_checked=len(heads), encrypted_files=len(bad), hosts_affected=1)
        evidence = [EvidenceItem(kind="file", description=f"header {h.header_hex[:32]} is not 'SQLite format 3'",
                                 path=str(h.path), data=h.to_dict()) for h in bad[:20]]
        return self.finding(ctx, f"{len(bad)} of {len(heads)} client ledgers are unreadable (SQLite header "
                                 f"overwritten); payroll of {facts['pii_people']:,} people inside", facts, evidence)


@register_detector
class EdrAlertDetector(Detector):
    """High or critical EDR alerts that were not blocked, or any ransomware rule hit."""

    id = "edr.alert"
    emergency_type = EMERGENCY_TYPE
    description = "EDR alert export: severity ≥ min_severity in lookback_hours"

    LEVELS = {"low": 0, "medium": 1, "high": 2, "critical": 3}

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        fs.parse_share(ctx.resource)
        lb, since = _lookback(ctx)
        floor = self.LEVELS.get(str(ctx.params.get("min_severity") or "high"), 2)
        path = agency.data_file(*fs.EDR_ALERTS)
        df = fs.read_edr_alerts(agency, since=since, until=ctx.now)
        sev = df["severity"].str.lower().map(self.LEVELS).fillna(0)
        hit = df[sev >= floor]
        if hit.empty:
            return DetectorResult.clear(f"{path.name}: {len(df)} EDR alerts in the last {lb:g} h, none "
                                        f"{'/'.join(k for k, v in self.LEVELS.items() if v >= floor)}")
        ransom = hit["rule"].str.contains("ransom|勒索|encrypt", case=False, regex=True)
        clients = [h.client_id for h in _unreadable_clients(agency)]
        facts = ransom_facts(ctx, clients, hit["at"].min().to_pydatetime())
        facts["ransomware"] = bool(ransom.any())
        facts.update(edr_alerts=len(hit), hosts_affected=int(hit["host"].nunique()), hosts=sorted(set(hit["host"])),
                     edr_rules=sorted(set(hit["rule"]))[:20],
                     attacker_active=bool((~hit["action"].isin(["blocked", "quarantined"])).any()))
        evidence = [EvidenceItem(kind="log_line", description="EDR alerts", path=str(path),
                                 data={"rows": hit.astype(str).head(20).to_dict(orient="records")})]
        return self.finding(ctx, f"{len(hit)} EDR alert(s) on {', '.join(facts['hosts'])}: "
                                 f"{', '.join(facts['edr_rules'][:3])}", facts, evidence)


# =========================================================================== injectors
def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


@register_injector
class InjectMassRename(Injector):
    """Really rename ``count`` files of the share to ``*<extension>`` (creating placeholder
    documents in the client folders when the share holds fewer), spread over ``minutes``, and
    log one rename event each. Never touches anything outside the share folder."""

    id = "files.inject_mass_rename"
    emergency_type = EMERGENCY_TYPE
    detector = "files.mass_rename"

    def inject(self, ctx: InjectionContext, *, count: int = 2000, extension: str = ".locked",
               minutes: float = 10, host: str = "FS01", user: str = "svc_sync",
               ended_minutes_ago: float = 0, clients: list[str] | None = None, **_: Any) -> InjectionReport:
        agency = ctx.agency
        share = fs.parse_share(ctx.resource)
        folder = fs.share_path(agency, share)
        rng = random.Random(ctx.seed)
        ext = extension if extension.startswith(".") else "." + extension
        # Only regular files really inside the share (a symlink pointing out is never followed).
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
                       and not p.name.endswith(ext) and folder in p.resolve().parents)
        if clients:
            files = [p for p in files if p.relative_to(folder).parts[0] in set(clients)]
        created: list[str] = []
        targets = list(clients or agency.client_ids)
        i = 0
        while len(files) < int(count):
            cid = targets[i % len(targets)]
            p = folder / cid / "凭证扫描" / f"scan_{i:06d}.pdf"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"%PDF-1.4 placeholder voucher scan\n")
            files.append(p)
            created.append(str(p.relative_to(folder)))
            i += 1
        chosen = sorted(rng.sample(files, int(count)))
        end = ctx.now - timedelta(minutes=float(ended_minutes_ago))
        span = timedelta(minutes=float(minutes)) * 0.98
        step = span / max(1, len(chosen) - 1) if len(chosen) > 1 else timedelta(0)
        start = end - span
        events, renamed = [], []
        for n, p in enumerate(chosen):
            target = p.with_name(p.name + ext)
            p.rename(target)
            old, new = str(p.relative_to(folder)).replace("\\", "/"), str(target.relative_to(folder)).replace("\\", "/")
            renamed.append([old, new])
            events.append({"at": _iso(start + step * n), "host": host, "user": user, "share": share,
                           "event": "rename", "path": old, "new_path": new})
        log = agency.data_file(*fs.FILE_EVENTS)
        before = _size(log)
        fs.append_events(agency, events)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"renamed {len(chosen)} files on share {share} to *{ext} within "
                                       f"{minutes:g} min ({len(created)} placeholder documents created first)",
                               changes={"share": share, "files_renamed": len(chosen), "extension": ext,
                                        "files_created": len(created), "host": host, "events_log": str(log)},
                               undo={"folder": str(folder), "renamed": renamed, "created": created,
                                     "log": str(log), "size_before": before},
                               detector=self.detector)

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        u = report.undo or {}
        folder = Path(u["folder"])
        for old, new in u.get("renamed", []):
            if (folder / new).exists():
                (folder / new).rename(folder / old)
        for rel in u.get("created", []):
            (folder / rel).unlink(missing_ok=True)
        _truncate(Path(u["log"]), int(u["size_before"]))


def _truncate(path: Path, size: int) -> None:
    import os

    if size == 0:
        path.unlink(missing_ok=True)
    elif path.is_file():
        os.truncate(path, size)


RANSOM_TEXT = ("YOUR FILES ARE ENCRYPTED!\n所有文件已被加密。\n"
               "To decrypt, send 2 BTC to bc1qdrill0000000000000000000000000000000 and mail your ID.\n"
               "(LedgerGuard drill file — not a real ransom note.)\n")


@register_injector
class InjectRansomNote(Injector):
    """Write ``README_DECRYPT.txt`` into the share root (and ``per_client`` client folders) and log
    the create events."""

    id = "files.inject_ransom_note"
    emergency_type = EMERGENCY_TYPE
    detector = "files.ransom_note"

    def inject(self, ctx: InjectionContext, *, name: str = "README_DECRYPT.txt", per_client: int = 0,
               host: str = "FS01", user: str = "svc_sync", **_: Any) -> InjectionReport:
        agency = ctx.agency
        share = fs.parse_share(ctx.resource)
        folder = fs.share_path(agency, share)
        dirs = [folder] + [d for d in sorted(folder.iterdir()) if d.is_dir()][: int(per_client)]
        written, events = [], []
        for d in dirs:
            p = d / name
            p.write_text(RANSOM_TEXT, encoding="utf-8")
            rel = str(p.relative_to(folder)).replace("\\", "/")
            written.append(rel)
            events.append({"at": _iso(ctx.now - timedelta(minutes=1)), "host": host, "user": user, "share": share,
                           "event": "create", "path": rel, "new_path": ""})
        log = agency.data_file(*fs.FILE_EVENTS)
        before = _size(log)
        fs.append_events(agency, events)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"wrote {len(written)} ransom note(s) {name} on share {share}",
                               changes={"paths": written}, detector=self.detector,
                               undo={"folder": str(folder), "paths": written, "log": str(log), "size_before": before})

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        u = report.undo or {}
        for rel in u.get("paths", []):
            (Path(u["folder"]) / rel).unlink(missing_ok=True)
        _truncate(Path(u["log"]), int(u["size_before"]))


@register_injector
class CorruptHeaderInjector(Injector):
    """Overwrite the first ``nbytes`` bytes (the SQLite header) of client ledgers, as encryption
    would; ``restore`` writes the saved bytes back."""

    id = "ledger.corrupt_header"
    emergency_type = EMERGENCY_TYPE
    detector = "ledger.db_unreadable"

    def inject(self, ctx: InjectionContext, *, clients: int | list[str] | str = 1, nbytes: int = 16,
               **_: Any) -> InjectionReport:
        agency = ctx.agency
        if clients == "all":
            chosen = list(agency.client_ids)
        elif isinstance(clients, list):
            chosen = clients
        else:
            chosen = agency.client_ids[: int(clients)]
        saved = {}
        junk = (b"LOCKED\x00ENC\x13\x37" * 20)[: int(nbytes)]
        for cid in chosen:
            path = agency.ledger_path(cid)
            with open(path, "r+b") as fh:
                saved[cid] = {"path": str(path), "bytes": fh.read(int(nbytes)).hex()}
                fh.seek(0)
                fh.write(junk)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"overwrote the SQLite header of {len(chosen)} ledgers",
                               changes={"clients": chosen, "nbytes": int(nbytes)}, undo={"saved": saved},
                               detector=self.detector)

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        for item in (report.undo or {}).get("saved", {}).values():
            with open(item["path"], "r+b") as fh:
                fh.write(bytes.fromhex(item["bytes"]))


@register_injector
class InjectEdrAlert(Injector):
    """Append a critical ransomware EDR alert that was only detected (not blocked)."""

    id = "edr.inject_alert"
    emergency_type = EMERGENCY_TYPE
    detector = "edr.alert"

    def inject(self, ctx: InjectionContext, *, host: str = "FS01", severity: str = "critical",
               rule: str = "Ransomware.FileEncryption.Behavior", action: str = "detected", **_: Any) -> InjectionReport:
        fs.parse_share(ctx.resource)
        log = ctx.agency.data_file(*fs.EDR_ALERTS)
        before = _size(log)
        lg.append_rows(ctx.agency, fs.EDR_ALERTS, [{"at": _iso(ctx.now - timedelta(minutes=2)), "host": host,
                                                    "severity": severity, "rule": rule,
                                                    "process": "C:\\Users\\Public\\svchost32.exe", "action": action}],
                       columns=fs.EDR_COLUMNS)
        return InjectionReport(injector=self.id, resource=ctx.resource, summary=f"{severity} EDR alert {rule} on {host}",
                               changes={"host": host, "rule": rule}, undo={"log": str(log), "size_before": before},
                               detector=self.detector)

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        _truncate(Path(report.undo["log"]), int(report.undo["size_before"]))


__all__ = ["MassRenameDetector", "RansomNoteDetector", "LedgerUnreadableDetector", "EdrAlertDetector",
           "InjectMassRename", "InjectRansomNote", "CorruptHeaderInjector", "InjectEdrAlert", "clean_backup",
           "ransom_facts"]
