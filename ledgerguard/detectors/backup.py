"""Backup detectors (emergency type ``backup_failure``, resource e.g. ``backups:nightly``) and
their paired injectors."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ledgerguard import backups as bk
from ledgerguard.agency.service import save_agency_config
from ledgerguard.detectors.base import (
    DetectionContext,
    Detector,
    DetectorResult,
    InjectionContext,
    InjectionReport,
    Injector,
    exposed_facts,
    hours,
    register_detector,
    register_injector,
)
from ledgerguard.models import EvidenceItem

EMERGENCY_TYPE = "backup_failure"


def _set_evidence(s: bk.BackupSet, description: str) -> EvidenceItem:
    return EvidenceItem(kind="backup_set", description=description, path=str(s.path),
                        data={"stamp": s.stamp, "status": s.status, "taken_at": s.taken_at.isoformat(),
                              "files": len(s.files), "errors": s.errors[:5]})


def _rpo(ctx: DetectionContext) -> float:
    return float(ctx.params.get("rpo_hours") or ctx.agency.config.rpo_hours)


@register_detector
class BackupAgeDetector(Detector):
    """The newest good backup is older than the RPO (or there is none)."""

    id = "backup.age"
    emergency_type = EMERGENCY_TYPE
    description = "newest good backup (manifest with status ok) older than the RPO"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        rpo = _rpo(ctx)
        sets = bk.list_backup_sets(agency)
        good = next((s for s in sets if s.good), None)
        if good is None:
            facts = exposed_facts(agency, agency.client_ids, control_failure=True)
            facts.update(backup_age_hours=None, rpo_hours=rpo, rpo_breached=True,
                         newest_good_backup=None, failed_sets_since=len(sets),
                         backup_sets_total=len(sets))
            evidence = [_set_evidence(s, f"backup set {s.stamp} is {s.status}") for s in sets[:10]]
            evidence.append(EvidenceItem(kind="file", description="backups folder",
                                         path=str(agency.backups_path), data={"sets": len(sets)}))
            return self.finding(ctx, f"no good backup at all under {agency.backups_path} "
                                     f"({len(sets)} sets, none complete with status ok)", facts, evidence)
        age = good.age_hours(ctx.now)
        failed = [s for s in sets if s.taken_at > good.taken_at and not s.good]
        if age <= rpo:
            extra = f"; {len(failed)} failed/incomplete set(s) since" if failed else ""
            return DetectorResult.clear(f"newest good backup {good.stamp} is {age:.1f} h old, "
                                        f"within RPO {rpo:g} h{extra}")
        facts = exposed_facts(agency, good.client_ids or agency.client_ids, control_failure=True)
        facts.update(backup_age_hours=hours(age), rpo_hours=rpo, rpo_breached=True,
                     newest_good_backup=good.stamp, failed_sets_since=len(failed),
                     backup_sets_total=len(sets))
        evidence = [_set_evidence(good, f"newest good backup, {age:.1f} h old (RPO {rpo:g} h)")]
        evidence += [_set_evidence(s, f"{s.status} backup set newer than the good one") for s in failed[:10]]
        return self.finding(ctx, f"newest good backup {good.stamp} is {age:.1f} h old, beyond RPO "
                                 f"{rpo:g} h ({len(failed)} failed/incomplete set(s) since)",
                            facts, evidence)


@register_detector
class BackupChecksumDetector(Detector):
    """Files of the newest set (with a manifest) no longer match the manifest's sha256."""

    id = "backup.checksum"
    emergency_type = EMERGENCY_TYPE
    description = "newest backup set's files vs the sha256 in its manifest"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        sets = [s for s in bk.list_backup_sets(agency) if s.has_manifest]
        if ctx.params.get("backup_set"):
            sets = [s for s in sets if s.stamp == ctx.params["backup_set"]]
        if not sets:
            return DetectorResult.clear(f"no backup set with a manifest under {agency.backups_path}; "
                                        f"nothing to verify (backup.age reports missing backups)")
        newest = sets[0]
        mismatches = bk.verify_checksums(newest)
        if not mismatches:
            return DetectorResult.clear(f"all {len(newest.files)} files of backup set {newest.stamp} "
                                        f"match their manifest sha256")
        clients = [m.client_id for m in mismatches]
        facts = exposed_facts(agency, clients, control_failure=True)
        facts.update(checksum_mismatches=[m.file for m in mismatches],
                     checksum_mismatch_count=len(mismatches), files_checked=len(newest.files),
                     backup_set=newest.stamp, backup_set_status=newest.status)
        evidence = [EvidenceItem(kind="checksum", description=f"{m.reason}: {m.file}", path=m.path,
                                 data={"expected_sha256": m.expected, "actual_sha256": m.actual,
                                       "client_id": m.client_id}) for m in mismatches]
        evidence.append(_set_evidence(newest, "backup set checked"))
        return self.finding(ctx, f"{len(mismatches)} of {len(newest.files)} files in backup set "
                                 f"{newest.stamp} do not match the manifest checksum", facts, evidence)


@register_detector
class BackupTestRestoreDetector(Detector):
    """A test restore of the newest good set into scratch fails."""

    id = "backup.test_restore"
    emergency_type = EMERGENCY_TYPE
    description = "test restore of the newest good set: sha256, quick_check, trial balance"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        good = bk.newest_good_backup(agency)
        if good is None:
            facts = exposed_facts(agency, agency.client_ids, control_failure=True)
            facts.update(test_restore_ok=False, test_restore_errors=["no good backup set to restore"],
                         backup_set=None)
            return self.finding(ctx, "no good backup set exists, so none can be restored", facts,
                                [EvidenceItem(kind="file", description="backups folder",
                                              path=str(agency.backups_path))])
        scratch = Path(ctx.scratch_dir) / "test-restore" / good.stamp
        result = bk.test_restore(good, scratch)
        if result.ok:
            shutil.rmtree(scratch, ignore_errors=True)
            return DetectorResult.clear(f"test restore of {good.stamp} passed: {len(result.files)} "
                                        f"ledgers restored, checksums, quick_check and trial "
                                        f"balances match the manifest")
        failed = [f["client_id"] for f in result.files if not f.get("ok")] or good.client_ids
        facts = exposed_facts(agency, failed, control_failure=True)
        facts.update(test_restore_ok=False, test_restore_errors=result.errors[:20],
                     test_restore_failed=len(failed), files_checked=len(result.files),
                     backup_set=good.stamp)
        evidence = [EvidenceItem(kind="test_restore", description=f"restore of {f['client_id']} failed",
                                 path=f.get("path"), data=f) for f in result.files if not f.get("ok")][:20]
        evidence.append(_set_evidence(good, "backup set test-restored"))
        return self.finding(ctx, f"test restore of backup set {good.stamp} failed for {len(failed)} of "
                                 f"{len(result.files)} ledgers: {result.errors[0] if result.errors else ''}",
                            facts, evidence)


# -- injectors -------------------------------------------------------------------------------

def _rewrite_manifest(s: bk.BackupSet, update: dict[str, Any]) -> None:
    data = json.loads(s.manifest_path.read_text(encoding="utf-8"))
    data.update(update)
    bk.write_manifest(s.path, data)


@register_injector
class BackupStaleInjector(Injector):
    """Make backups stale: fail the newest N sets, or age every set so the newest good one is
    ``hours_old`` old (default 3 × RPO + 3 h, the 75 h of scenario D)."""

    id = "backup.stale"
    emergency_type = EMERGENCY_TYPE
    detector = "backup.age"

    def inject(self, ctx: InjectionContext, *, sets: int | None = None, hours_old: float | None = None,
               remove_manifest: bool = False, **_: Any) -> InjectionReport:
        agency = ctx.agency
        changes: dict[str, Any] = {}
        if sets is None and hours_old is None:
            hours_old = agency.config.rpo_hours * 3 + 3
        if hours_old is not None:
            changes["aged"] = self._age(agency, ctx.now, float(hours_old))
        if sets:
            changes["failed"] = self._fail(agency, int(sets), remove_manifest)
        parts = []
        if "aged" in changes:
            parts.append(f"aged {len(changes['aged'])} backup sets so the newest good one is {hours_old:g} h old")
        if "failed" in changes:
            parts.append(f"{'removed the manifest of' if remove_manifest else 'marked failed'} "
                         f"the newest {len(changes['failed'])} set(s)")
        return InjectionReport(injector=self.id, resource=ctx.resource, summary="; ".join(parts),
                               changes=changes, detector=self.detector)

    @staticmethod
    def _age(agency, now: datetime, hours_old: float) -> list[dict[str, str]]:
        sets = bk.list_backup_sets(agency)
        good = next((s for s in sets if s.good), None)
        if good is None:
            raise RuntimeError(f"no good backup set under {agency.backups_path} to age")
        delta = (now - timedelta(hours=hours_old)) - good.taken_at
        # Rename in an order that never collides with a folder not yet moved.
        order = sorted(sets, key=lambda s: s.taken_at, reverse=delta.total_seconds() > 0)
        moved = []
        for s in order:
            base = (s.started_at or s.taken_at) + delta
            if s.has_manifest:
                upd = {"started_at": ((s.started_at or s.taken_at) + delta).isoformat(),
                       "finished_at": (s.taken_at + delta).isoformat()}
                _rewrite_manifest(s, upd)
            new_path = s.path.with_name(bk.make_stamp(base))
            n = 1
            while new_path.exists() and new_path != s.path:
                new_path = s.path.with_name(f"{bk.make_stamp(base)}-{n}")
                n += 1
            if new_path != s.path:
                s.path.rename(new_path)
            moved.append({"from": s.stamp, "to": new_path.name})
        return moved

    @staticmethod
    def _fail(agency, count: int, remove_manifest: bool) -> list[str]:
        sets = bk.list_backup_sets(agency)[:count]
        for s in sets:
            if not s.has_manifest:
                continue
            if remove_manifest:
                s.manifest_path.unlink()
            else:
                _rewrite_manifest(s, {"status": "failed",
                                      "errors": s.errors + ["marked failed by injector backup.stale"]})
        return [s.stamp for s in sets]


@register_injector
class BackupCorruptFileInjector(Injector):
    """Flip bytes in one backed-up file of the newest set (its sha256 no longer matches)."""

    id = "backup.corrupt_file"
    emergency_type = EMERGENCY_TYPE
    detector = "backup.checksum"

    def inject(self, ctx: InjectionContext, *, client_id: str | None = None, offset: int | None = None,
               nbytes: int = 64, **_: Any) -> InjectionReport:
        sets = [s for s in bk.list_backup_sets(ctx.agency) if s.has_manifest]
        if not sets or not sets[0].files:
            raise RuntimeError(f"no backup set with files under {ctx.agency.backups_path}")
        s = sets[0]
        entry = s.file_for(client_id) if client_id else s.files[0]
        if entry is None:
            raise RuntimeError(f"backup set {s.stamp} holds no file for client {client_id!r}")
        path = s.file_path(entry)
        size = path.stat().st_size
        offset = size // 2 if offset is None else int(offset)
        nbytes = max(1, min(int(nbytes), size - offset))
        before = bk.sha256_file(path)
        _flip(path, offset, nbytes)
        after = bk.sha256_file(path)
        changes = {"backup_set": s.stamp, "client_id": entry.client_id, "path": str(path),
                   "offset": offset, "nbytes": nbytes, "sha256_before": before, "sha256_after": after}
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"flipped {nbytes} bytes at offset {offset} of {path}",
                               changes=changes, undo={"path": str(path), "offset": offset, "nbytes": nbytes},
                               detector=self.detector)

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        u = report.undo or {}
        _flip(Path(u["path"]), int(u["offset"]), int(u["nbytes"]))  # XOR is its own inverse


def _flip(path: Path, offset: int, nbytes: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        data = fh.read(nbytes)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


FAILING_COMMAND = ["{python}", "-c",
                   "import sys; sys.stderr.write('backup target unreachable: "
                   "//nas01/backup (injected by backup.break_command)\\n'); sys.exit({code})"]


@register_injector
class BackupBreakCommandInjector(Injector):
    """Point agency.backup_command at a command that fails with ``exit_code`` (undo restores it)."""

    id = "backup.break_command"
    emergency_type = EMERGENCY_TYPE
    detector = "backup.age"

    def inject(self, ctx: InjectionContext, *, exit_code: int = 3, **_: Any) -> InjectionReport:
        agency = ctx.agency
        old = list(agency.config.backup_command)
        new = [part.replace("{code}", str(int(exit_code))) for part in FAILING_COMMAND]
        agency.config = agency.config.model_copy(update={"backup_command": new})
        save_agency_config(agency.root, agency.config)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"backup_command now exits with code {exit_code}",
                               changes={"backup_command": new, "exit_code": int(exit_code)},
                               undo={"backup_command": old}, detector=self.detector)

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        agency = ctx.agency
        agency.config = agency.config.model_copy(update={"backup_command": list(report.undo["backup_command"])})
        save_agency_config(agency.root, agency.config)


__all__ = ["BackupAgeDetector", "BackupChecksumDetector", "BackupTestRestoreDetector",
           "BackupStaleInjector", "BackupCorruptFileInjector", "BackupBreakCommandInjector",
           "EMERGENCY_TYPE"]
