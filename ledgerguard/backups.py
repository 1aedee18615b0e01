"""Nightly backups of the client ledgers, and the agency's backup command.

A backup set is a folder ``backups/<YYYYmmddTHHMMSSZ>/`` with one consistent copy per client
ledger (SQLite online backup API) and a ``manifest.json`` written last, atomically. A set without
a manifest (half-written) or with ``status != "ok"`` is not a good backup.

    python -m ledgerguard.backups run --agency DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import shutil
import sqlite3
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ledgerguard.ledgers import connect, ledger_stats

MANIFEST = "manifest.json"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
COPY_CHUNK = 8 * 1024 * 1024  # per kernel copy; the verifier hashes in CHUNK reads
CHUNK = 1024 * 1024


class BackupError(RuntimeError):
    """The backup run failed; the set (if any) has status "failed"."""


class ChecksumMismatchError(RuntimeError):
    """A restored copy's sha256 differs from the manifest."""

    def __init__(self, src: Path, expected: str, actual: str):
        self.src, self.expected, self.actual = Path(src), expected, actual
        super().__init__(f"checksum mismatch for {src}: expected sha256 {expected}, got {actual}")


@dataclass
class BackupFile:
    """One file of a backup set, as the manifest records it."""

    client_id: str
    file: str
    bytes: int
    sha256: str
    vouchers: int
    lines: int
    debit_cents: int
    credit_cents: int
    balanced: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BackupSet:
    """A folder under backups/. ``good`` means a manifest with status "ok"."""

    path: Path
    stamp: str
    status: str  # ok | failed | incomplete (no manifest)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    files: list[BackupFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    has_manifest: bool = False

    @property
    def good(self) -> bool:
        return self.has_manifest and self.status == "ok"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def taken_at(self) -> datetime:
        """When the copy was taken: the manifest's finished_at, else the folder's stamp."""
        return self.finished_at or self.started_at or stamp_time(self.stamp) or \
            datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc)

    def age_hours(self, now: datetime | None = None) -> float:
        now = now or datetime.now(timezone.utc)
        return (now - self.taken_at).total_seconds() / 3600

    def file_for(self, client_id: str) -> BackupFile | None:
        for f in self.files:
            if f.client_id == client_id:
                return f
        return None

    def file_path(self, entry: BackupFile) -> Path:
        return self.path / entry.file

    @property
    def client_ids(self) -> list[str]:
        return [f.client_id for f in self.files]

    def summary(self) -> dict[str, Any]:
        return {"stamp": self.stamp, "path": str(self.path), "status": self.status,
                "taken_at": self.taken_at.isoformat(), "files": len(self.files)}


@dataclass
class ChecksumMismatch:
    client_id: str
    file: str
    path: str
    expected: str
    actual: str | None
    reason: str  # "mismatch" | "missing"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RestoredFile:
    path: Path
    bytes: int
    sha256: str


@dataclass
class TestRestoreResult:
    __test__ = False  # not a pytest class

    ok: bool
    backup_set: str
    scratch_dir: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "backup_set": self.backup_set, "scratch_dir": str(self.scratch_dir),
                "files": self.files, "errors": self.errors}


# -- helpers -----------------------------------------------------------------------------------

def stamp_time(stamp: str) -> datetime | None:
    try:
        return datetime.strptime(stamp[:16], STAMP_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def make_stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime(STAMP_FORMAT)


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _parse_dt(value: Any) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(str(value))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def write_manifest(set_path: Path, manifest: dict[str, Any]) -> Path:
    """Write manifest.json atomically: a temp file, fsync, then rename."""
    target = set_path / MANIFEST
    tmp = set_path / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, ensure_ascii=False, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


def read_backup_set(path: Path) -> BackupSet:
    """Read one set folder; a missing or unreadable manifest gives status "incomplete"."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return BackupSet(path=path, stamp=path.name, status="incomplete",
                         errors=["no manifest.json (the run did not finish)"])
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = [BackupFile(**{k: f[k] for k in BackupFile.__dataclass_fields__}) for f in data.get("files", [])]
        return BackupSet(path=path, stamp=path.name, status=str(data.get("status", "failed")),
                         started_at=_parse_dt(data.get("started_at")),
                         finished_at=_parse_dt(data.get("finished_at")), files=files,
                         errors=list(data.get("errors") or []), has_manifest=True)
    except (ValueError, KeyError, TypeError) as exc:
        return BackupSet(path=path, stamp=path.name, status="incomplete",
                         errors=[f"unreadable manifest: {type(exc).__name__}: {exc}"])


def list_backup_sets(agency) -> list[BackupSet]:
    """Every set folder under the agency's backups dir, newest first (failed ones included)."""
    root = agency.backups_path
    if not root.is_dir():
        return []
    sets = [read_backup_set(p) for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and stamp_time(p.name) is not None]
    return sorted(sets, key=lambda s: (s.taken_at, s.stamp), reverse=True)


def newest_good_backup(agency, *, client_id: str | None = None,
                       require_balanced: bool = False) -> BackupSet | None:
    """The newest good set; with ``client_id``, the newest good set holding that client
    (and, with ``require_balanced``, whose copy of that client balances)."""
    for s in list_backup_sets(agency):
        if not s.good:
            continue
        if client_id is None:
            return s
        entry = s.file_for(client_id)
        if entry is not None and (entry.balanced or not require_balanced):
            return s
    return None


# -- the backup run --------------------------------------------------------------------------

def _copy_ledger(src: Path, dst: Path) -> None:
    """Consistent copy through SQLite's online backup API."""
    source = connect(src, read_only=True)
    try:
        target = sqlite3.connect(dst)
        try:
            # No per-page syncs while copying; the whole file is fsynced once below.
            target.execute("PRAGMA synchronous = OFF")
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    with open(dst, "rb+") as fh:
        os.fsync(fh.fileno())


def run_backup(agency, *, now: datetime | None = None) -> BackupSet:
    """Back up every client ledger into a new set and prune old sets.

    ``now`` stamps the set (the generator uses it to lay down past nights). Raises
    :class:`BackupError` when any ledger could not be copied; the set then has a manifest with
    status "failed" and the errors.
    """
    started_wall = time.monotonic()
    started = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    root = agency.backups_path
    root.mkdir(parents=True, exist_ok=True)
    stamp = make_stamp(started)
    set_path = root / stamp
    n = 1
    while set_path.exists():
        set_path = root / f"{stamp}-{n}"
        n += 1
    set_path.mkdir()

    files: list[dict[str, Any]] = []
    errors: list[str] = []
    for client_id in agency.client_ids:
        src = agency.ledger_path(client_id)
        dst = set_path / f"{client_id}.sqlite"
        try:
            if not src.is_file():
                raise FileNotFoundError(f"ledger file missing: {src}")
            _copy_ledger(src, dst)
            stats = ledger_stats(dst)
            if not stats.integrity_ok:
                raise BackupError(f"copy is not readable: {stats.error}")
            files.append(BackupFile(client_id=client_id, file=dst.name, bytes=dst.stat().st_size,
                                    sha256=sha256_file(dst), vouchers=stats.vouchers,
                                    lines=stats.lines, debit_cents=stats.debit_cents,
                                    credit_cents=stats.credit_cents,
                                    balanced=stats.balanced).to_dict())
        except (OSError, sqlite3.Error, BackupError) as exc:
            errors.append(f"{client_id}: {type(exc).__name__}: {exc}")
            dst.unlink(missing_ok=True)

    finished = started + timedelta(seconds=round(time.monotonic() - started_wall, 3))
    status = "ok" if not errors else "failed"
    manifest = {
        "agency": agency.config.name,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "status": status,
        "clients": len(agency.client_ids),
        "files": files,
        "errors": errors,
    }
    write_manifest(set_path, manifest)
    backup_set = read_backup_set(set_path)
    if errors:
        raise BackupError(f"backup set {set_path} failed for {len(errors)} of "
                          f"{len(agency.client_ids)} ledgers: " + "; ".join(errors[:3]))
    prune_backups(agency)
    return backup_set


def prune_backups(agency, *, keep: int | None = None) -> list[Path]:
    """Delete the oldest sets beyond ``keep`` (default agency.keep_backups); never the newest good one."""
    keep = keep or agency.config.keep_backups
    sets = list_backup_sets(agency)
    newest_good = next((s for s in sets if s.good), None)
    removed = []
    for s in sets[keep:]:
        if newest_good is not None and s.path == newest_good.path:
            continue
        shutil.rmtree(s.path, ignore_errors=True)
        removed.append(s.path)
    return removed


# -- verification and restore -----------------------------------------------------------------

def verify_checksums(backup_set: BackupSet) -> list[ChecksumMismatch]:
    """Re-hash every file the manifest lists (1 MiB chunks); missing or different files are returned."""
    out: list[ChecksumMismatch] = []
    for entry in backup_set.files:
        path = backup_set.file_path(entry)
        if not path.is_file():
            out.append(ChecksumMismatch(entry.client_id, entry.file, str(path), entry.sha256, None, "missing"))
            continue
        actual = sha256_file(path)
        if actual != entry.sha256:
            out.append(ChecksumMismatch(entry.client_id, entry.file, str(path), entry.sha256, actual, "mismatch"))
    return out


def restore_file(src: Path | str, dst: Path | str, expected_sha256: str, *,
                 fsync: bool = False) -> RestoredFile:
    """Copy ``src`` to ``dst`` and prove the copy: its SHA-256 must equal ``expected_sha256``.

    The kernel copies each chunk (``os.sendfile``, no trip through Python) while a second
    thread hashes the chunk just written, read back from the *destination*: what is verified is
    the restored file itself, and copying and hashing overlap, so the whole costs about the
    slower of the two rather than their sum. The copy goes to a temp file next to ``dst`` and
    is renamed into place only when the hash matches; on a mismatch the temp file is removed
    and :class:`ChecksumMismatchError` is raised. ``fsync=True`` makes the copy durable before
    the rename (swap-in uses it; a staging copy does not need it).
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.restoring-{os.getpid()}-{threading.get_ident()}")
    h = hashlib.sha256()
    written: queue.Queue = queue.Queue(maxsize=4)
    failure: list[BaseException] = []

    def hasher(out_fd: int) -> None:
        while (item := written.get()) is not None:
            if failure:
                continue  # keep draining so the copier never blocks
            offset, length = item
            try:
                while length:
                    data = os.pread(out_fd, min(length, CHUNK), offset)
                    if not data:
                        raise BackupError(f"{tmp}: short read at {offset} while verifying")
                    h.update(data)
                    offset += len(data)
                    length -= len(data)
            except BaseException as exc:  # noqa: BLE001 — re-raised on the calling thread
                failure.append(exc)

    size = 0
    try:
        with open(src, "rb") as fin, open(tmp, "w+b") as fout:
            thread = threading.Thread(target=hasher, args=(fout.fileno(),), name="restore-verify",
                                      daemon=True)
            thread.start()
            try:
                total = os.fstat(fin.fileno()).st_size
                while size < total and not failure:
                    sent = _copy_chunk(fin, fout, size, min(COPY_CHUNK, total - size))
                    if sent == 0:
                        break  # the source shrank under us: the hash will not match
                    written.put((size, sent))
                    size += sent
            finally:
                written.put(None)
                thread.join()
            if failure:
                raise failure[0]
            if fsync:
                fout.flush()
                os.fsync(fout.fileno())
        actual = h.hexdigest()
        if actual != expected_sha256:
            raise ChecksumMismatchError(src, expected_sha256, actual)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return RestoredFile(path=dst, bytes=size, sha256=actual)


def _copy_chunk(fin, fout, offset: int, length: int) -> int:
    """Copy one chunk in the kernel where the platform allows it, else through a buffer."""
    try:
        return os.sendfile(fout.fileno(), fin.fileno(), offset, length)
    except (AttributeError, OSError):
        data = os.pread(fin.fileno(), length, offset)
        fout.write(data)
        fout.flush()
        return len(data)


def test_restore(backup_set: BackupSet, scratch_dir: Path | str) -> TestRestoreResult:
    """Restore every file of the set into ``scratch_dir`` and prove it usable: sha256 equals the
    manifest, PRAGMA quick_check passes, and the trial balance and counts equal the manifest."""
    scratch = Path(scratch_dir)
    result = TestRestoreResult(ok=False, backup_set=backup_set.stamp, scratch_dir=scratch)
    if not backup_set.has_manifest:
        result.errors.append(f"{backup_set.stamp}: no manifest, nothing to restore")
        return result
    if not backup_set.files:
        result.errors.append(f"{backup_set.stamp}: manifest lists no files")
    scratch.mkdir(parents=True, exist_ok=True)
    for entry in backup_set.files:
        row: dict[str, Any] = {"client_id": entry.client_id, "file": entry.file, "ok": False}
        try:
            restored = restore_file(backup_set.file_path(entry), scratch / entry.file, entry.sha256)
            row.update(path=str(restored.path), sha256=restored.sha256, bytes=restored.bytes)
            stats = ledger_stats(restored.path)
            row.update(integrity_ok=stats.integrity_ok, vouchers=stats.vouchers, lines=stats.lines,
                       balanced=stats.balanced, difference_cents=stats.difference_cents)
            if not stats.integrity_ok:
                raise BackupError(f"restored copy fails integrity check: {stats.error}")
            differs = stats.matches(entry.to_dict())
            if differs:
                raise BackupError("restored copy differs from manifest in " + ", ".join(differs))
            row["ok"] = True
        except (OSError, ChecksumMismatchError, BackupError) as exc:
            row["error"] = str(exc)
            result.errors.append(f"{entry.client_id}: {exc}")
        result.files.append(row)
    result.ok = not result.errors
    return result


test_restore.__test__ = False  # a library function, not a pytest test


# -- command line ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    from ledgerguard.agency.models import AgencyDataError
    from ledgerguard.agency.service import load_agency

    parser = argparse.ArgumentParser(prog="python -m ledgerguard.backups",
                                     description="Back up an agency's client ledgers.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="take a backup set now")
    run.add_argument("--agency", required=True, type=Path, help="agency folder (holds agency.yaml)")
    ls = sub.add_parser("list", help="list backup sets, newest first")
    ls.add_argument("--agency", required=True, type=Path)
    ver = sub.add_parser("verify", help="re-hash the newest set against its manifest")
    ver.add_argument("--agency", required=True, type=Path)
    args = parser.parse_args(argv)

    try:
        agency = load_agency(args.agency)
        if args.command == "run":
            s = run_backup(agency)
            print(f"backup ok: {s.path} ({len(s.files)} ledgers)")
        elif args.command == "list":
            for s in list_backup_sets(agency):
                print(f"{s.stamp}\t{s.status}\t{len(s.files)} files\t{s.taken_at.isoformat()}")
        elif args.command == "verify":
            sets = [s for s in list_backup_sets(agency) if s.has_manifest]
            if not sets:
                raise BackupError(f"no backup set with a manifest under {agency.backups_path}")
            bad = verify_checksums(sets[0])
            for m in bad:
                print(f"{m.reason}: {m.path}", file=sys.stderr)
            if bad:
                return 1
            print(f"checksums ok: {sets[0].path}")
    except (AgencyDataError, BackupError, OSError) as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
