"""Backup actions: rerun the backup command, verify checksums, test-restore."""

from __future__ import annotations

import subprocess
import time

from ledgerguard import backups as bk
from ledgerguard.remediation.base import ActionContext, ActionFailed, ActionResult, register_action, tail


@register_action("backup.rerun")
def rerun(ctx: ActionContext) -> ActionResult:
    """Run the agency's backup_command (timeout ``params.timeout_seconds``) and check that a new
    good set appeared."""
    agency = ctx.agency
    argv = agency.backup_argv()
    timeout = float(ctx.params.get("timeout_seconds") or agency.config.backup_timeout_seconds)
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would run {' '.join(argv)}", {"command": argv, "dry_run": True})
    before = {s.stamp for s in bk.list_backup_sets(agency)}
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=agency.root, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ActionFailed(f"backup command timed out after {timeout:g} s: {' '.join(argv)}",
                           {"command": argv, "stdout_tail": tail(exc.stdout), "stderr_tail": tail(exc.stderr),
                            "timeout_seconds": timeout}) from None
    except OSError as exc:
        raise ActionFailed(f"backup command could not start: {exc}", {"command": argv}) from None
    output = {"command": argv, "exit_code": proc.returncode,
              "stdout_tail": tail(proc.stdout), "stderr_tail": tail(proc.stderr),
              "duration_seconds": round(time.monotonic() - started, 3)}
    if proc.returncode != 0:
        last = (tail(proc.stderr, 1) or tail(proc.stdout, 1)).strip()
        raise ActionFailed(f"backup command exited with code {proc.returncode}: {last}", output)
    new = [s for s in bk.list_backup_sets(agency) if s.stamp not in before]
    good = next((s for s in new if s.good), None)
    if good is None:
        raise ActionFailed("backup command exited 0 but no new good backup set appeared under "
                           f"{agency.backups_path}", output)
    output.update(backup_set=good.stamp, path=str(good.path), files=len(good.files))
    return ActionResult(True, f"new good backup set {good.stamp} with {len(good.files)} ledgers", output)


def _newest_with_manifest(ctx: ActionContext) -> bk.BackupSet:
    sets = [s for s in bk.list_backup_sets(ctx.agency) if s.has_manifest]
    if ctx.params.get("backup_set"):
        sets = [s for s in sets if s.stamp == ctx.params["backup_set"]]
    if not sets:
        raise ActionFailed(f"no backup set with a manifest under {ctx.agency.backups_path}")
    return sets[0]


@register_action("backup.verify_checksums")
def verify_checksums(ctx: ActionContext) -> ActionResult:
    """Re-hash the newest set against its manifest."""
    s = _newest_with_manifest(ctx)
    mismatches = bk.verify_checksums(s)
    output = {"backup_set": s.stamp, "files": len(s.files),
              "mismatches": [m.to_dict() for m in mismatches]}
    if mismatches:
        raise ActionFailed(f"{len(mismatches)} of {len(s.files)} files in backup set {s.stamp} do not "
                           f"match the manifest: " + ", ".join(m.file for m in mismatches[:5]), output)
    return ActionResult(True, f"all {len(s.files)} files of backup set {s.stamp} match the manifest", output)


@register_action("backup.test_restore")
def test_restore(ctx: ActionContext) -> ActionResult:
    """Restore the newest good set into scratch_dir/<incident_id>/test-restore and prove it usable."""
    s = bk.newest_good_backup(ctx.agency)
    if s is None:
        raise ActionFailed(f"no good backup set under {ctx.agency.backups_path} to test-restore")
    target = ctx.incident_dir / "test-restore"
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would test-restore {s.stamp} into {target}",
                            {"backup_set": s.stamp, "dry_run": True})
    result = bk.test_restore(s, target / s.stamp)
    output = result.to_dict()
    output["scratch_dir"] = str(result.scratch_dir)
    if not result.ok:
        raise ActionFailed(f"test restore of {s.stamp} failed: " + "; ".join(result.errors[:3]), output)
    return ActionResult(True, f"test restore of {s.stamp} passed for {len(result.files)} ledgers "
                              f"(checksums, quick_check, trial balance)", output)


test_restore.__test__ = False  # type: ignore[attr-defined]
