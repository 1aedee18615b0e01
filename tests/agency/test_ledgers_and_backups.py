from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from ledgerguard import backups as bk
from ledgerguard.ledgers import (
    UnbalancedVoucher,
    VoucherLine,
    add_vouchers,
    connect,
    create_ledger,
    ledger_stats,
)


def test_create_ledger_and_stats(tmp_path):
    path = create_ledger(tmp_path / "x.sqlite")
    conn = connect(path)
    add_vouchers(conn, [("记-01-001", "2026-01-05", "收到货款", "tester",
                         [VoucherLine("1002", debit_cents=12345), VoucherLine("1122", credit_cents=12345)])])
    conn.commit()
    with pytest.raises(UnbalancedVoucher):
        add_vouchers(conn, [("记-01-002", "2026-01-06", "bad", "t",
                             [VoucherLine("1002", debit_cents=1), VoucherLine("1122", credit_cents=2)])])
    conn.close()
    s = ledger_stats(path)
    assert (s.vouchers, s.lines, s.debit_cents, s.credit_cents, s.balanced, s.integrity_ok) == \
        (1, 2, 12345, 12345, True, True)
    names = dict(sqlite3.connect(path).execute("SELECT code, name FROM accounts"))
    assert names["1002"] == "银行存款" and names["5602"] == "管理费用"
    # any SQLAlchemy URL works too
    assert ledger_stats(f"sqlite:///{path}").vouchers == 1
    assert ledger_stats(f"sqlite+pysqlite:///file:{path}?mode=ro&uri=true").vouchers == 1


def test_missing_and_corrupt_ledgers_are_reported_not_raised(tmp_path):
    missing = tmp_path / "gone.sqlite"
    s = ledger_stats(missing)
    assert not s.integrity_ok and "missing" in s.error
    assert not missing.exists(), "reading stats must not create the file"
    corrupt = create_ledger(tmp_path / "c.sqlite")
    with open(corrupt, "r+b") as fh:
        fh.write(b"\x00garbage" * 20)
    s = ledger_stats(corrupt)
    assert not s.integrity_ok and s.error
    assert not ledger_stats("postgresql+psycopg://nobody@127.0.0.1:1/none").integrity_ok


def test_generated_backup_sets_and_manifest_checksums(agency):
    sets = bk.list_backup_sets(agency)
    assert len(sets) == 3 and all(s.good for s in sets)
    assert sets[0].taken_at > sets[1].taken_at > sets[2].taken_at
    assert sets[0].age_hours() < 24
    for s in sets:
        local = s.taken_at.astimezone(agency.tz)
        assert (local.hour, local.minute) == (2, 0)
        assert bk.verify_checksums(s) == []
        assert sorted(s.client_ids) == agency.client_ids
        data = json.loads(s.manifest_path.read_text(encoding="utf-8"))
        assert data["status"] == "ok" and data["started_at"] and data["finished_at"]
        entry = data["files"][0]
        assert set(entry) >= {"client_id", "file", "bytes", "sha256", "vouchers", "lines",
                              "debit_cents", "credit_cents", "balanced"}
    # older sets hold no more vouchers than newer ones: the books grew night by night
    v = [s.file_for("C0001").vouchers for s in sets]
    assert v[0] >= v[1] >= v[2]


def test_run_backup_writes_a_good_set_and_prunes(agency):
    agency.config.keep_backups = 3
    s = bk.run_backup(agency)
    assert s.good and len(s.files) == 5
    assert bk.newest_good_backup(agency).path == s.path
    sets = bk.list_backup_sets(agency)
    assert len(sets) == 3 and sets[0].path == s.path
    for f in s.files:
        assert f.sha256 == bk.sha256_file(s.file_path(f))
        assert f.balanced


def test_half_written_set_is_not_good(agency):
    newest = bk.list_backup_sets(agency)[0]
    half = agency.backups_path / bk.make_stamp(datetime.now(timezone.utc) + timedelta(minutes=1))
    half.mkdir()
    (half / "C0001.sqlite").write_bytes(b"partial")
    sets = bk.list_backup_sets(agency)
    assert sets[0].path == half and sets[0].status == "incomplete" and not sets[0].good
    assert bk.newest_good_backup(agency).path == newest.path


def test_failed_run_has_failed_manifest_and_raises(agency):
    agency.ledger_path("C0002").unlink()
    with pytest.raises(bk.BackupError) as err:
        bk.run_backup(agency)
    assert "C0002" in str(err.value)
    newest = bk.list_backup_sets(agency)[0]
    assert newest.has_manifest and newest.status == "failed" and not newest.good
    assert any("C0002" in e for e in newest.errors)


def test_restore_file_copies_and_raises_on_mismatch(agency, tmp_path):
    s = bk.newest_good_backup(agency)
    entry = s.files[0]
    out = bk.restore_file(s.file_path(entry), tmp_path / "r" / "ok.sqlite", entry.sha256)
    assert out.sha256 == entry.sha256 and out.bytes == entry.bytes
    assert bk.sha256_file(out.path) == entry.sha256
    dst = tmp_path / "r" / "bad.sqlite"
    with pytest.raises(bk.ChecksumMismatchError) as err:
        bk.restore_file(s.file_path(entry), dst, "0" * 64)
    assert entry.sha256 in str(err.value)
    assert not dst.exists()
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["ok.sqlite"], "no temp file left behind"


def test_test_restore_passes_and_detects_tampering(agency, tmp_path):
    s = bk.newest_good_backup(agency)
    ok = bk.test_restore(s, tmp_path / "tr1")
    assert ok.ok and len(ok.files) == 5 and all(f["ok"] for f in ok.files)
    # tamper the manifest: the trial balance no longer equals it
    data = json.loads(s.manifest_path.read_text(encoding="utf-8"))
    data["files"][1]["vouchers"] += 1
    bk.write_manifest(s.path, data)
    bad = bk.test_restore(bk.read_backup_set(s.path), tmp_path / "tr2")
    assert not bad.ok and "vouchers" in bad.errors[0]


def test_backup_command_line(agency):
    argv = agency.backup_argv()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "backup ok" in proc.stdout
    assert len(bk.list_backup_sets(agency)) == 4
    proc = subprocess.run([sys.executable, "-m", "ledgerguard.backups", "run", "--agency",
                           str(agency.root / "nope")], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "backup failed" in proc.stderr
