"""Ledger actions: freeze, restore the newest good backup to staging, verify it, swap it in."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from ledgerguard import backups as bk
from ledgerguard.detectors.base import client_from_resource
from ledgerguard.ledgers import ledger_stats
from ledgerguard.remediation.base import ActionContext, ActionFailed, ActionResult, register_action

READ_ONLY = 0o444
READ_WRITE = 0o644
SIDE_FILES = ("-journal", "-wal", "-shm")


def _client(ctx: ActionContext) -> tuple[str, Path]:
    client_id = client_from_resource(ctx.resource)
    return client_id, ctx.agency.ledger_path(client_id)


def _is_one_ledger(ctx: ActionContext) -> bool:
    return ctx.resource.startswith("ledger:") or ":" not in ctx.resource


def _broken_ledgers(ctx: ActionContext) -> list[str]:
    """A share or server (ransomware): every client ledger that no longer opens as SQLite."""
    from ledgerguard.sources.fileshare import ledger_headers

    return [h.client_id for h in ledger_headers(ctx.agency) if not h.ok]


def _staged_clients(ctx: ActionContext) -> list[str]:
    folder = ctx.incident_dir / "staging"
    return sorted(p.name[: -len(".restore.json")] for p in folder.glob("*.restore.json")) if folder.is_dir() else []


def _clean_backup_set(ctx: ActionContext) -> str | None:
    """``prefer: clean_backup``: the set backup.find_clean chose for this incident (taken before the attack)."""
    if ctx.params.get("prefer") != "clean_backup":
        return None
    chosen = ctx.incident_dir / "clean-backup.json"
    if not chosen.is_file():
        raise ActionFailed(f"no clean backup chosen for this incident ({chosen} missing); run backup.find_clean first")
    return json.loads(chosen.read_text(encoding="utf-8"))["backup_set"]


def _each(ctx: ActionContext, clients: list[str], one, what: str) -> ActionResult:
    """Run ``one(ctx, client_id)`` for every client of a share; fail if any fails, naming them."""
    if not clients:
        raise ActionFailed(f"no ledger to {what} for {ctx.resource}")
    results, failed = {}, {}
    for client_id in clients:
        try:
            results[client_id] = one(ctx, client_id)
        except ActionFailed as exc:
            failed[client_id] = exc.reason
    output = {"clients": clients, "done": sorted(results), "failed": failed,
              "results": {c: r.output for c, r in results.items()}}
    if failed:
        raise ActionFailed(f"{what}: {len(failed)} of {len(clients)} ledgers failed: "
                           + "; ".join(f"{c}: {r}" for c, r in list(failed.items())[:5]), output)
    return ActionResult(True, f"{what}: {len(results)} ledger(s) of {ctx.resource}", output)


def _staging(ctx: ActionContext, client_id: str) -> tuple[Path, Path]:
    folder = ctx.incident_dir / "staging"
    return folder / f"{client_id}.sqlite", folder / f"{client_id}.restore.json"


def _read_sidecar(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ActionFailed(f"no staging copy recorded at {path}; run ledger.restore_to_staging first")
    return json.loads(path.read_text(encoding="utf-8"))


def _write_sidecar(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


@register_action("ledger.freeze")
def freeze(ctx: ActionContext) -> ActionResult:
    """Make the ledger read-only (chmod 0o444) and write ``<client>.frozen`` with the reason."""
    client_id, path = _client(ctx)
    marker = ctx.agency.frozen_marker(client_id)
    reason = str(ctx.params.get("reason") or f"frozen for incident {ctx.incident_id}")
    output: dict[str, Any] = {"ledger": str(path), "marker": str(marker), "ledger_exists": path.exists()}
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would freeze {path}", {**output, "dry_run": True})
    if marker.exists() and (not path.exists() or stat.S_IMODE(path.stat().st_mode) == READ_ONLY):
        output["already_frozen"] = True
        return ActionResult(True, f"{client_id} was already frozen", output)
    previous_mode = None
    if path.exists():
        previous_mode = oct(stat.S_IMODE(path.stat().st_mode))
        os.chmod(path, READ_ONLY)
    marker.parent.mkdir(parents=True, exist_ok=True)
    _write_sidecar(marker, {"client_id": client_id, "reason": reason, "incident_id": ctx.incident_id,
                            "frozen_at": ctx.now.isoformat(), "ledger": str(path),
                            "previous_mode": previous_mode})
    output.update(previous_mode=previous_mode, reason=reason)
    return ActionResult(True, f"froze ledger of {client_id} (read-only, marker {marker.name}): {reason}", output)


@register_action("ledger.unfreeze")
def unfreeze(ctx: ActionContext) -> ActionResult:
    """Undo ledger.freeze: writable again, marker removed."""
    client_id, path = _client(ctx)
    marker = ctx.agency.frozen_marker(client_id)
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would unfreeze {path}", {"dry_run": True})
    if path.exists():
        os.chmod(path, READ_WRITE)
    marker.unlink(missing_ok=True)
    return ActionResult(True, f"unfroze ledger of {client_id}", {"ledger": str(path), "marker": str(marker)})


@register_action("ledger.restore_to_staging")
def restore_to_staging(ctx: ActionContext) -> ActionResult:
    """Restore the newest good (balanced) backup copy of the client into
    scratch_dir/<incident_id>/staging/<client>.sqlite, checksum-verified. On a share, every
    ledger that no longer opens, from the clean backup chosen for the incident."""
    if _is_one_ledger(ctx):
        return _restore_one(ctx, _client(ctx)[0], ctx.params.get("backup_set") or _clean_backup_set(ctx))
    wanted = ctx.params.get("backup_set") or _clean_backup_set(ctx)
    return _each(ctx, _broken_ledgers(ctx), lambda c, cid: _restore_one(c, cid, wanted), "restore to staging")


def _restore_one(ctx: ActionContext, client_id: str, wanted: str | None) -> ActionResult:
    if wanted:
        s = next((x for x in bk.list_backup_sets(ctx.agency) if x.stamp == wanted and x.good), None)
        if s is None:
            raise ActionFailed(f"backup set {wanted!r} is not a good set under {ctx.agency.backups_path}")
    else:
        s = bk.newest_good_backup(ctx.agency, client_id=client_id, require_balanced=True)
        if s is None:
            raise ActionFailed(f"no good backup set holds a balanced copy of {client_id}")
    entry = s.file_for(client_id)
    if entry is None:
        raise ActionFailed(f"backup set {s.stamp} holds no copy of {client_id}")
    staging, sidecar = _staging(ctx, client_id)
    src = s.file_path(entry)
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would restore {src} to {staging}",
                            {"backup_set": s.stamp, "source": str(src), "staging": str(staging), "dry_run": True})
    try:
        restored = bk.restore_file(src, staging, entry.sha256)
    except bk.ChecksumMismatchError as exc:
        raise ActionFailed(str(exc), {"backup_set": s.stamp, "source": str(src)}) from None
    except OSError as exc:
        raise ActionFailed(f"cannot restore {src}: {exc}", {"backup_set": s.stamp}) from None
    info = {"client_id": client_id, "backup_set": s.stamp, "backup_taken_at": s.taken_at.isoformat(),
            "source": str(src), "staging": str(staging), "sha256": restored.sha256,
            "bytes": restored.bytes, "manifest": entry.to_dict(), "restored_at": ctx.now.isoformat(),
            "verified": False}
    _write_sidecar(sidecar, info)
    return ActionResult(True, f"restored {client_id} from backup {s.stamp} to staging "
                              f"({entry.vouchers} vouchers, sha256 verified)", info)


@register_action("ledger.verify_staging")
def verify_staging(ctx: ActionContext) -> ActionResult:
    """The staging copy passes quick_check, balances, and its counts equal the manifest."""
    if _is_one_ledger(ctx):
        return _verify_one(ctx, _client(ctx)[0])
    return _each(ctx, _staged_clients(ctx), _verify_one, "verify staging")


def _verify_one(ctx: ActionContext, client_id: str) -> ActionResult:
    staging, sidecar = _staging(ctx, client_id)
    info = _read_sidecar(sidecar)
    if not staging.is_file():
        raise ActionFailed(f"staging copy missing: {staging}")
    sha = bk.sha256_file(staging)
    stats = ledger_stats(staging)
    output = {"staging": str(staging), "sha256": sha, "stats": stats.to_dict(),
              "manifest": info["manifest"], "backup_set": info["backup_set"]}
    problems = []
    if sha != info["sha256"]:
        problems.append(f"sha256 changed since restore ({sha} ≠ {info['sha256']})")
    if not stats.integrity_ok:
        problems.append(f"integrity check failed: {stats.error}")
    elif not stats.balanced:
        problems.append(f"trial balance off by {stats.difference_cents} cents")
    differs = stats.matches(info["manifest"])
    if stats.integrity_ok and differs:
        problems.append("differs from manifest in " + ", ".join(differs))
    if problems:
        raise ActionFailed(f"staging copy of {client_id} failed verification: " + "; ".join(problems), output)
    if not ctx.dry_run:
        _write_sidecar(sidecar, {**info, "verified": True, "verified_at": ctx.now.isoformat(),
                                 "verified_stats": stats.to_dict()})
    return ActionResult(True, f"staging copy of {client_id} verified: quick_check ok, balanced, "
                              f"{stats.vouchers} vouchers / {stats.lines} lines as in backup "
                              f"{info['backup_set']}", output)


@register_action("ledger.swap_in")
def swap_in(ctx: ActionContext) -> ActionResult:
    """Keep the broken ledger as evidence (``<client>.sqlite.broken-<stamp>``), move the verified
    staging copy into place atomically (os.replace) and unfreeze."""
    if _is_one_ledger(ctx):
        return _swap_one(ctx, _client(ctx)[0])
    return _each(ctx, _staged_clients(ctx), _swap_one, "swap in")


def _swap_one(ctx: ActionContext, client_id: str) -> ActionResult:
    path = ctx.agency.ledger_path(client_id)
    staging, sidecar = _staging(ctx, client_id)
    info = _read_sidecar(sidecar)
    if not info.get("verified") and not ctx.params.get("force"):
        raise ActionFailed(f"staging copy of {client_id} is not verified; run ledger.verify_staging first")
    marker = ctx.agency.frozen_marker(client_id)
    output: dict[str, Any] = {"ledger": str(path), "staging": str(staging), "backup_set": info["backup_set"],
                              "restored_sha256": info["sha256"]}
    # Idempotent: the restored copy is already in place and unfrozen.
    if path.is_file() and bk.sha256_file(path) == info["sha256"]:
        if marker.exists():
            os.chmod(path, READ_WRITE)
            marker.unlink()
        return ActionResult(True, f"{client_id}: the restored copy is already in place", {**output, "already_done": True})
    if not staging.is_file():
        raise ActionFailed(f"staging copy missing: {staging}")
    stamp = bk.make_stamp(ctx.now)
    broken = path.with_name(f"{path.name}.broken-{stamp}")
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would keep {path} as {broken.name} and swap in {staging}",
                            {**output, "dry_run": True})
    if path.exists():
        output["broken_sha256"] = bk.sha256_file(path)
        if not broken.exists():
            try:
                os.link(path, broken)
            except OSError:
                shutil.copy2(path, broken)
        output["broken_path"] = str(broken)
    else:
        output["broken_path"] = None
    # Side files of the old database (a hot journal would be replayed into the new file): evidence too.
    for suffix in SIDE_FILES:
        side = Path(str(path) + suffix)
        if side.exists():
            os.replace(side, Path(str(broken) + suffix))
    # Copy next to the ledger first (same file system), checksum-verified, then one atomic rename.
    tmp = path.with_name(f".{path.name}.swap-in")
    try:
        restored = bk.restore_file(staging, tmp, info["sha256"], fsync=True)
    except bk.ChecksumMismatchError as exc:
        raise ActionFailed(str(exc), output) from None
    os.chmod(tmp, READ_WRITE)
    os.replace(tmp, path)
    marker.unlink(missing_ok=True)
    output.update(restored_path=str(path), restored_sha256=restored.sha256,
                  restored_sha256_check=bk.sha256_file(path), unfrozen=True, stats=ledger_stats(path).to_dict())
    _write_sidecar(sidecar, {**info, "swapped_in_at": ctx.now.isoformat(), "broken_path": output["broken_path"]})
    return ActionResult(True, f"swapped the verified backup copy ({info['backup_set']}) into {path.name}; "
                              f"broken file kept as {broken.name if output['broken_path'] else '(none: file was missing)'}",
                        output)
