"""The compliance archive: a self-contained folder an auditor can check offline.

    <out>/records/<table>.jsonl   the register's records of the incidents opened in the range
    <out>/reports/<incident>/…    the rendered reports, post-mortems and notice drafts
    <out>/evidence/<incident>/…   the evidence files the findings and runbook steps point at
    <out>/manifest.json           SHA-256 and size of every file, record counts, the range, and the
                                  head of the register's timeline hash chain at export time

``verify_archive`` needs nothing but the folder: it recomputes every file's checksum and every
exported timeline entry's hash (and the links between consecutive entries) and names each file
or record that changed, went missing or was added. Keyword-only, Prefect-free.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledgerguard.backups import sha256_file
from ledgerguard.register.models import (
    ApprovalRecord,
    DrillRecord,
    FindingRecord,
    ImprovementItem,
    Incident,
    IncidentFlowRun,
    NoticeDraft,
    Notification,
    ObligationRecord,
    PostmortemReview,
    RunbookAction,
    SignalRecord,
    StaffCheckin,
    TimelineEntry,
    as_utc,
    entry_hash,
    to_jsonable,
    utcnow,
)

__all__ = ["ARCHIVE_FORMAT", "ArchiveError", "ArchiveProblem", "export_archive", "verify_archive"]

ARCHIVE_FORMAT = "ledgerguard-archive/1"
MANIFEST = "manifest.json"
# Per incident: every table that holds its records (ack links hold tokens' hashes only: left out).
INCIDENT_TABLES = (SignalRecord, FindingRecord, TimelineEntry, Notification, RunbookAction, ObligationRecord,
                   IncidentFlowRun, ApprovalRecord, DrillRecord, ImprovementItem, StaffCheckin, PostmortemReview,
                   NoticeDraft)


class ArchiveError(ValueError):
    """The export cannot be made (bad range, a folder that is not empty…)."""


@dataclass(frozen=True)
class ArchiveProblem:
    path: str
    problem: str  # changed, missing, unexpected, record edited, broken link, manifest
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" + (f" — {self.detail}" if self.detail else "")


def _row(obj: Any) -> dict[str, Any]:
    return {c.key: to_jsonable(getattr(obj, c.key)) for c in obj.__mapper__.column_attrs}


def _evidence_paths(value: Any) -> list[str]:
    """Paths of files named anywhere in a finding's evidence or an action's output."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("path", "manifest", "file", "report", "refusal_letter", "trail") and isinstance(item, str):
                found.append(item)
            else:
                found += _evidence_paths(item)
    elif isinstance(value, list):
        for item in value:
            found += _evidence_paths(item)
    return found


def export_archive(*, db_session: Session, start: datetime, end: datetime, out: Path, reports_dir: Path,
                   allowed_roots: list[Path], prefect_history: Callable[[list[str]], dict[str, Any]] | None = None,
                   ) -> dict[str, Any]:
    """Write the archive of the incidents opened in ``[start, end)`` into ``out`` (new or empty)
    and return its manifest. Evidence is copied only from under ``allowed_roots`` (the agency
    and scratch folders): a path in a record never makes the export read elsewhere.

    ``prefect_history(incident_ids)`` returns ``{"runs": [{"incident_id", …run…}], …summary}``
    read from Prefect's API (the caller's: this module never imports Prefect). Prefect vacuums
    its runs; the archive keeps them as ``records/prefect_flow_runs.jsonl``. Without it, or when
    it raises, the manifest says the run history is not in the archive and why."""
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise ArchiveError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ArchiveError(f"{out}: the folder is not empty; export into a new folder")
    (out / "records").mkdir(parents=True, exist_ok=True)
    incidents = list(db_session.scalars(select(Incident).where(Incident.opened_at >= start, Incident.opened_at < end)
                                        .order_by(Incident.opened_at, Incident.id)))
    ids = [i.id for i in incidents]
    counts = {"incidents": len(incidents)}
    _write_jsonl(out / "records" / "incidents.jsonl", [_row(i) for i in incidents])
    evidence: set[str] = set()
    for model in INCIDENT_TABLES:
        rows = list(db_session.scalars(select(model).where(model.incident_id.in_(ids)))) if ids else []
        if model is TimelineEntry:
            rows.sort(key=lambda r: r.seq)
        records = [_row(r) for r in rows]
        for record in records:
            evidence.update(_evidence_paths(record.get("evidence")) + _evidence_paths(record.get("output")))
        _write_jsonl(out / "records" / f"{model.__tablename__}.jsonl", records)
        counts[model.__tablename__] = len(records)
    prefect_summary: dict[str, Any]
    if prefect_history is None:
        prefect_summary = {"included": False, "reason": "no Prefect API was given to the export"}
    else:
        try:
            history = prefect_history(ids) if ids else {"runs": []}
        except Exception as exc:  # noqa: BLE001 — the register's part of the archive is still worth writing
            prefect_summary = {"included": False, "reason": f"{type(exc).__name__}: {exc}"}
        else:
            runs = history.pop("runs")
            _write_jsonl(out / "records" / "prefect_flow_runs.jsonl", runs)
            counts["prefect_flow_runs"] = len(runs)
            prefect_summary = {"included": True, **to_jsonable(history)}
    for incident_id in ids:
        source = Path(reports_dir) / incident_id
        if source.is_dir():
            shutil.copytree(source, out / "reports" / incident_id)
    roots = [Path(r).resolve() for r in allowed_roots]
    copied = 0
    for raw in sorted(evidence):
        path = Path(raw).resolve()
        if not path.is_file() or not any(path.is_relative_to(r) for r in roots):
            continue
        root = next(r for r in roots if path.is_relative_to(r))
        target = out / "evidence" / root.name / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied += 1
    head = db_session.scalars(select(TimelineEntry).order_by(TimelineEntry.seq.desc()).limit(1)).first()
    files = {p.relative_to(out).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(out.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {
        "format": ARCHIVE_FORMAT, "created_at": utcnow().isoformat(), "from": start.isoformat(),
        "to": end.isoformat(), "records": counts, "evidence_files": copied,
        "timeline_head": {"seq": head.seq, "hash": head.hash} if head else None,
        "prefect": prefect_summary,
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
    return manifest


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


def verify_archive(path: Path) -> list[ArchiveProblem]:
    """Every difference between the archive and its manifest, and every timeline record whose
    hash no longer matches its content; empty when the archive is intact."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        return [ArchiveProblem(MANIFEST, "missing", f"{root} is not a LedgerGuard archive")]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files: dict[str, dict[str, Any]] = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return [ArchiveProblem(MANIFEST, "manifest", f"unreadable: {exc}")]
    if manifest.get("format") != ARCHIVE_FORMAT:
        return [ArchiveProblem(MANIFEST, "manifest", f"format {manifest.get('format')!r}, expected {ARCHIVE_FORMAT}")]
    problems: list[ArchiveProblem] = []
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST}
    for name, meta in sorted(files.items()):
        if name not in present:
            problems.append(ArchiveProblem(name, "missing"))
            continue
        digest = sha256_file(root / name)
        if digest != meta.get("sha256"):
            problems.append(ArchiveProblem(name, "changed", f"sha256 {digest[:16]}… ≠ manifest "
                                                            f"{str(meta.get('sha256'))[:16]}…"))
    for name in sorted(present - set(files)):
        problems.append(ArchiveProblem(name, "unexpected", "not in the manifest"))
    problems += _verify_timeline(root / "records" / "timeline_entries.jsonl")
    return problems


def _verify_timeline(path: Path) -> list[ArchiveProblem]:
    if not path.is_file():
        return []
    problems: list[ArchiveProblem] = []
    previous: dict[str, Any] | None = None
    name = f"records/{path.name}"
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
            recomputed = entry_hash(seq=entry["seq"], incident_id=entry["incident_id"],
                                    occurred_at=datetime.fromisoformat(entry["occurred_at"]), stage=entry["stage"],
                                    kind=entry["kind"], actor=entry["actor"], message=entry["message"],
                                    data=entry["data"], flow_run_id=entry["flow_run_id"],
                                    prev_hash=entry["prev_hash"])
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(ArchiveProblem(f"{name}:{line_no}", "record edited", f"unreadable: {exc}"))
            previous = None
            continue
        if recomputed != entry["hash"]:
            problems.append(ArchiveProblem(f"{name}:{line_no}", "record edited",
                                           f"timeline entry #{entry['seq']} ({entry['kind']}) no longer matches "
                                           "its hash"))
        if previous is not None and entry["seq"] == previous["seq"] + 1 and entry["prev_hash"] != previous["hash"]:
            problems.append(ArchiveProblem(f"{name}:{line_no}", "broken link",
                                           f"entry #{entry['seq']} does not follow #{previous['seq']}"))
        previous = entry
    return problems
