"""Restore + verify of a ~1 GB ledger backup vs a plain file copy of it, in the same run.

Measured (ratios of medians against `shutil.copyfile` of the same file):
- `ratio` (the target, ≤ 2): what `ledger.restore_to_staging` does — a single-pass copy that
  hashes while it copies and fails on any SHA-256 difference from the backup manifest;
- `full_verify_ratio` (reported): the same plus `ledger.verify_staging`'s SQLite quick_check
  and trial balance over the whole staging copy, which must read every page once more.

    python benchmarks/restore.py [--size-mb 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path


def build_ledger(path: Path, size_mb: int) -> None:
    """A real double-entry ledger grown to about size_mb: balanced vouchers, two lines each."""
    from ledgerguard.ledgers import create_ledger

    create_ledger(path)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    memo = "收到货款 " + "x" * 180
    batch = 20_000
    voucher_id = con.execute("SELECT COALESCE(MAX(id), 0) FROM vouchers").fetchone()[0]
    while path.stat().st_size < size_mb * 1024 * 1024:
        vouchers, lines = [], []
        for _ in range(batch):
            voucher_id += 1
            amount = (voucher_id * 7919) % 10_000_000 + 100
            vouchers.append((voucher_id, f"记-{voucher_id:08d}", "2026-11-01", "收到货款", "bench"))
            lines.append((voucher_id, "1002", amount, 0, memo))
            lines.append((voucher_id, "5001", 0, amount, memo))
        con.executemany("INSERT INTO vouchers(id, voucher_no, date, summary, preparer) VALUES (?,?,?,?,?)", vouchers)
        con.executemany("INSERT INTO voucher_lines(voucher_id, account_code, debit_cents, credit_cents, memo) "
                        "VALUES (?,?,?,?,?)", lines)
        con.commit()
    con.close()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", type=float, default=2.0)
    args = parser.parse_args()

    from ledgerguard.backups import restore_file
    from ledgerguard.ledgers import ledger_stats

    work = Path(tempfile.mkdtemp(prefix="lg-restore-bench-"))
    try:
        backup = work / "C9999.sqlite"
        t0 = time.perf_counter()
        build_ledger(backup, args.size_mb)
        build_s = time.perf_counter() - t0
        expected = sha256(backup)
        size = backup.stat().st_size

        restore_times, full_times, copy_times = [], [], []
        for i in range(args.rounds):
            target = work / f"copy-{i}.sqlite"
            t0 = time.perf_counter()
            shutil.copyfile(backup, target)
            copy_times.append(time.perf_counter() - t0)
            target.unlink()

            staging = work / f"staging-{i}.sqlite"
            t0 = time.perf_counter()
            restore_file(backup, staging, expected)
            restore_times.append(time.perf_counter() - t0)
            stats = ledger_stats(staging)
            full_times.append(time.perf_counter() - t0)
            if not (stats.integrity_ok and stats.balanced):
                raise SystemExit(f"restored ledger failed verification: {stats}")
            staging.unlink()
        copy = statistics.median(copy_times)
        ratio = statistics.median(restore_times) / copy
        result = {
            "benchmark": "restore",
            "backup_bytes": size,
            "build_s": round(build_s, 2),
            "rounds": args.rounds,
            "plain_copy_median_s": round(copy, 3),
            "restore_checksum_median_s": round(statistics.median(restore_times), 3),
            "ratio": round(ratio, 3),
            "restore_full_verify_median_s": round(statistics.median(full_times), 3),
            "full_verify_ratio": round(statistics.median(full_times) / copy, 3),
            "target_ratio": args.target,
            "ok": ratio <= args.target,
        }
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
