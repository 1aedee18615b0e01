"""Ledger detectors (emergency type ``ledger_loss``, resource ``ledger:<client_id>``) and their
paired injectors. The baseline is the newest good backup manifest's entry for the client."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

from ledgerguard import backups as bk
from ledgerguard.detectors.base import (
    DetectionContext,
    Detector,
    DetectorResult,
    InjectionContext,
    InjectionReport,
    Injector,
    base_facts,
    client_from_resource,
    hours,
    register_detector,
    register_injector,
)
from ledgerguard.ledgers import LedgerStats, connect, ledger_stats, row_keys
from ledgerguard.models import EvidenceItem

EMERGENCY_TYPE = "ledger_loss"


def _baseline(agency, client_id: str) -> tuple[bk.BackupSet | None, bk.BackupFile | None]:
    """Newest good backup set holding this client, and its manifest entry."""
    s = bk.newest_good_backup(agency, client_id=client_id)
    return s, (s.file_for(client_id) if s else None)


def _restore_facts(ctx: DetectionContext, client_id: str) -> dict[str, Any]:
    """restorable_within_rpo and backup_age_hours from the newest good, balanced copy."""
    rpo = float(ctx.params.get("rpo_hours") or ctx.agency.config.rpo_hours)
    s = bk.newest_good_backup(ctx.agency, client_id=client_id, require_balanced=True)
    if s is None:
        return {"restorable": False, "restorable_within_rpo": False, "backup_age_hours": None,
                "rpo_hours": rpo, "restore_backup_set": None}
    age = s.age_hours(ctx.now)
    return {"restorable": True, "restorable_within_rpo": age <= rpo, "backup_age_hours": hours(age),
            "rpo_hours": rpo, "restore_backup_set": s.stamp}


def _common(ctx: DetectionContext, client_id: str) -> dict[str, Any]:
    agency = ctx.agency
    restore = _restore_facts(ctx, client_id)
    facts = base_facts(agency, [client_id],
                       # Data that no backup can bring back is lost for good (PIPL Art. 57 if it held PI:
                       # the ledgers hold payroll vouchers).
                       pii_lost=not restore["restorable"],
                       control_failure=not restore["restorable_within_rpo"])
    facts.update(restore)
    facts["frozen"] = agency.frozen_marker(client_id).exists()
    return facts


def _stats_evidence(path: Path, stats: LedgerStats, description: str) -> EvidenceItem:
    return EvidenceItem(kind="row_count", description=description, path=str(path), data=stats.to_dict())


def _check_client(ctx: DetectionContext) -> tuple[str, Path]:
    client_id = client_from_resource(ctx.resource)
    return client_id, ctx.agency.ledger_path(client_id)  # raises UnknownClientError naming clients.csv


@register_detector
class LedgerRowCountDropDetector(Detector):
    """Fewer vouchers/lines than the newest good backup recorded, or the ledger file is gone."""

    id = "ledger.row_count_drop"
    emergency_type = EMERGENCY_TYPE
    description = "voucher/line counts vs the newest good backup manifest"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        client_id, path = _check_client(ctx)
        min_drop = float(ctx.params.get("min_drop_pct") or 0)
        s, entry = _baseline(ctx.agency, client_id)
        missing = not path.exists()
        stats = ledger_stats(path)
        if not missing and not stats.integrity_ok:
            return DetectorResult.clear(f"ledger {path.name} cannot be read ({stats.error}); counts "
                                        f"not comparable — ledger.trial_balance reports integrity")
        before_v = entry.vouchers if entry else None
        before_l = entry.lines if entry else None
        if not missing and entry is None:
            return DetectorResult.clear(f"no good backup holds {client_id}; no baseline to compare "
                                        f"{stats.vouchers} vouchers against")
        now_v = 0 if missing else stats.vouchers
        now_l = 0 if missing else stats.lines
        v_lost = max(0, (before_v or 0) - now_v)
        l_lost = max(0, (before_l or 0) - now_l)
        missing_nos: list[str] = []
        if entry is not None and not missing:
            # Reconcile row keys too: vouchers entered since the backup can hide a deletion.
            then, current = row_keys(s.file_path(entry)), row_keys(path)
            if then is not None and current is not None:
                gone_v = then[0] - current[0]
                missing_nos = sorted(no for _, no in gone_v)
                v_lost = max(v_lost, len(gone_v))
                l_lost = max(l_lost, len(then[1] - current[1]))
        drop_pct = max(100.0 * v_lost / before_v if before_v else 0.0,
                       100.0 * l_lost / before_l if before_l else 0.0)
        if not missing and not ((v_lost or l_lost) and drop_pct > min_drop):
            detail = "no drop" if not (v_lost or l_lost) else f"drop {drop_pct:.2f} % within {min_drop:g} %"
            return DetectorResult.clear(f"{client_id}: {now_v} vouchers / {now_l} lines now vs "
                                        f"{before_v} / {before_l} in backup {s.stamp}: {detail}")
        facts = _common(ctx, client_id)
        facts.update(ledger_missing=missing, vouchers_before=before_v, vouchers_now=now_v,
                     vouchers_lost=v_lost if entry else None, lines_before=before_l, lines_now=now_l,
                     lines_lost=l_lost if entry else None, drop_pct=round(drop_pct, 2),
                     missing_voucher_nos=missing_nos[:50],
                     baseline_backup=s.stamp if s else None)
        evidence = [_stats_evidence(path, stats, "ledger now" if not missing else "ledger file missing")]
        if entry is not None:
            evidence.append(EvidenceItem(kind="row_count", description=f"manifest of backup {s.stamp}",
                                         path=str(s.file_path(entry)), data=entry.to_dict()))
        if missing:
            summary = f"ledger of {client_id} is missing: {path}"
        else:
            summary = (f"ledger of {client_id} lost {v_lost} vouchers and {l_lost} lines since backup "
                       f"{s.stamp} ({before_v} → {now_v} vouchers)")
        return self.finding(ctx, summary, facts, evidence)


@register_detector
class LedgerTrialBalanceDetector(Detector):
    """Debits ≠ credits, or the ledger fails its integrity check (missing, corrupt)."""

    id = "ledger.trial_balance"
    emergency_type = EMERGENCY_TYPE
    description = "trial balance (sum of debits = sum of credits) and PRAGMA quick_check"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        client_id, path = _check_client(ctx)
        stats = ledger_stats(path)
        if stats.integrity_ok and stats.balanced:
            return DetectorResult.clear(f"{client_id}: trial balance holds ({stats.lines} lines, debits = "
                                        f"credits = {stats.debit_cents / 100:,.2f} CNY), quick_check ok")
        facts = _common(ctx, client_id)
        facts.update(integrity_ok=stats.integrity_ok, ledger_missing=not path.exists(),
                     trial_balance_difference_cents=stats.difference_cents if stats.integrity_ok else None,
                     debit_cents=stats.debit_cents, credit_cents=stats.credit_cents,
                     integrity_error=stats.error)
        evidence = [EvidenceItem(kind="trial_balance", description="trial balance and quick_check",
                                 path=str(path), data=stats.to_dict())]
        if stats.integrity_ok:
            summary = (f"trial balance of {client_id} is off by {stats.difference_cents / 100:,.2f} CNY "
                       f"(debits {stats.debit_cents} ≠ credits {stats.credit_cents} cents)")
        else:
            summary = f"ledger of {client_id} fails its integrity check: {stats.error}"
        return self.finding(ctx, summary, facts, evidence)


# -- injectors -------------------------------------------------------------------------------

def _writable(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise FileNotFoundError(f"ledger file missing: {path}")
    return connect(path)


@register_injector
class DeleteVouchersInjector(Injector):
    """Delete ``count`` whole vouchers with their lines: counts drop, the books still balance."""

    id = "ledger.delete_vouchers"
    emergency_type = EMERGENCY_TYPE
    detector = "ledger.row_count_drop"

    def inject(self, ctx: InjectionContext, *, count: int = 5, pick: str = "random",
               **_: Any) -> InjectionReport:
        """``pick``: random, oldest or newest vouchers."""
        client_id = client_from_resource(ctx.resource)
        path = ctx.agency.ledger_path(client_id)
        rng = random.Random(ctx.seed)
        conn = _writable(path)
        try:
            ids = [r[0] for r in conn.execute("SELECT id FROM vouchers ORDER BY id")]
            n = min(int(count), len(ids))
            if pick == "oldest":
                chosen = ids[:n]
            elif pick == "newest":
                chosen = ids[len(ids) - n:]
            else:
                chosen = sorted(rng.sample(ids, n))
            marks = ",".join("?" * len(chosen))
            nos = [r[0] for r in conn.execute(f"SELECT voucher_no FROM vouchers WHERE id IN ({marks})", chosen)]
            lines = conn.execute(f"DELETE FROM voucher_lines WHERE voucher_id IN ({marks})", chosen).rowcount
            conn.execute(f"DELETE FROM vouchers WHERE id IN ({marks})", chosen)
            conn.commit()
        finally:
            conn.close()
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"deleted {len(chosen)} vouchers ({lines} lines) from {path.name}",
                               changes={"path": str(path), "voucher_ids": chosen, "voucher_nos": nos,
                                        "vouchers_deleted": len(chosen), "lines_deleted": lines},
                               detector=self.detector)


@register_injector
class DeleteLinesInjector(Injector):
    """Delete ``count`` debit lines: the trial balance breaks (and the line count drops)."""

    id = "ledger.delete_lines"
    emergency_type = EMERGENCY_TYPE
    detector = "ledger.trial_balance"

    def inject(self, ctx: InjectionContext, *, count: int = 1, **_: Any) -> InjectionReport:
        client_id = client_from_resource(ctx.resource)
        path = ctx.agency.ledger_path(client_id)
        rng = random.Random(ctx.seed)
        conn = _writable(path)
        try:
            rows = conn.execute("SELECT id, debit_cents FROM voucher_lines WHERE debit_cents > 0 "
                                "ORDER BY id").fetchall()
            chosen = sorted(rng.sample(rows, min(int(count), len(rows))))
            conn.executemany("DELETE FROM voucher_lines WHERE id = ?", [(r[0],) for r in chosen])
            conn.commit()
        finally:
            conn.close()
        removed = sum(r[1] for r in chosen)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"deleted {len(chosen)} debit lines ({removed} cents) from {path.name}",
                               changes={"path": str(path), "line_ids": [r[0] for r in chosen],
                                        "debit_cents_removed": removed},
                               detector=self.detector)


@register_injector
class DeleteFileInjector(Injector):
    """Delete the ledger file."""

    id = "ledger.delete_file"
    emergency_type = EMERGENCY_TYPE
    detector = "ledger.row_count_drop"

    def inject(self, ctx: InjectionContext, **_: Any) -> InjectionReport:
        client_id = client_from_resource(ctx.resource)
        path = ctx.agency.ledger_path(client_id)
        if not path.is_file():
            raise FileNotFoundError(f"ledger file missing already: {path}")
        sha = bk.sha256_file(path)
        size = path.stat().st_size
        path.unlink()
        for suffix in ("-journal", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return InjectionReport(injector=self.id, resource=ctx.resource, summary=f"deleted {path}",
                               changes={"path": str(path), "sha256_before": sha, "bytes": size},
                               detector=self.detector)


@register_injector
class CorruptFileInjector(Injector):
    """Overwrite the SQLite header bytes so the file is no longer a database."""

    id = "ledger.corrupt_file"
    emergency_type = EMERGENCY_TYPE
    detector = "ledger.trial_balance"

    def inject(self, ctx: InjectionContext, *, nbytes: int = 100, **_: Any) -> InjectionReport:
        client_id = client_from_resource(ctx.resource)
        path = ctx.agency.ledger_path(client_id)
        if not path.is_file():
            raise FileNotFoundError(f"ledger file missing: {path}")
        before = bk.sha256_file(path)
        junk = (b"LOCKED-BY-DRILL\x00" * ((int(nbytes) // 16) + 1))[: int(nbytes)]
        with open(path, "r+b") as fh:
            fh.write(junk)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"overwrote the first {nbytes} bytes of {path.name}",
                               changes={"path": str(path), "nbytes": int(nbytes), "sha256_before": before,
                                        "sha256_after": bk.sha256_file(path)},
                               detector=self.detector)


__all__ = ["LedgerRowCountDropDetector", "LedgerTrialBalanceDetector", "DeleteVouchersInjector",
           "DeleteLinesInjector", "DeleteFileInjector", "CorruptFileInjector", "EMERGENCY_TYPE"]
