from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from ledgerguard import backups as bk
from ledgerguard.agency import load_agency
from ledgerguard.ledgers import ledger_stats
from ledgerguard.sample import generate_agency

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=timezone.utc)  # 17:30 in Shanghai


def digest(root):
    h = hashlib.sha256()
    for name in ("agency.yaml", "clients.csv", "contacts.yaml", "filing-tracker.csv"):
        h.update((root / name).read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    a = generate_agency(tmp_path / "a", clients=4, nights=1, seed=5, now=NOW)
    b = generate_agency(tmp_path / "b", clients=4, nights=1, seed=5, now=NOW)
    c = generate_agency(tmp_path / "c", clients=4, nights=1, seed=6, now=NOW)
    assert digest(a.root) == digest(b.root) != digest(c.root)
    for cid in a.client_ids:
        assert ledger_stats(a.ledger_path(cid)) == ledger_stats(b.ledger_path(cid))


def test_nightly_sets_at_two_in_the_morning_shanghai(tmp_path):
    agency = generate_agency(tmp_path / "a", clients=3, nights=3, seed=1, now=NOW)
    sets = bk.list_backup_sets(agency)
    shanghai = ZoneInfo("Asia/Shanghai")
    assert [s.taken_at.astimezone(shanghai).strftime("%m-%d %H:%M") for s in sets] == \
        ["03-10 02:00", "03-09 02:00", "03-08 02:00"]
    assert 0 < sets[0].age_hours(NOW) < 24


def test_before_two_the_newest_set_is_from_yesterday(tmp_path):
    early = datetime(2026, 3, 9, 17, 0, tzinfo=timezone.utc)  # 01:00 on 03-10 in Shanghai
    agency = generate_agency(tmp_path / "a", clients=2, nights=1, seed=1, now=early)
    (s,) = bk.list_backup_sets(agency)
    assert s.taken_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%m-%d %H:%M") == "03-09 02:00"
    assert s.age_hours(early) == pytest.approx(23, abs=0.1)


def test_content_is_realistic(agency):
    names = set(agency.clients.name)
    assert len(names) == len(agency.clients) and all(n.endswith("有限公司") for n in names)
    assert "代理记账" in agency.config.name
    assert 10 <= len(agency.contacts.people) <= 14
    for p in agency.contacts.people:
        assert p.email == f"{p.id}@agency.example" and p.id.isascii()
    import sqlite3
    conn = sqlite3.connect(agency.ledger_path("C0001"))
    summaries = {r[0] for r in conn.execute("SELECT summary FROM vouchers")}
    dates = [r[0] for r in conn.execute("SELECT date FROM vouchers ORDER BY id")]
    unbalanced = conn.execute(
        "SELECT voucher_id FROM voucher_lines GROUP BY voucher_id "
        "HAVING SUM(debit_cents) != SUM(credit_cents)").fetchall()
    conn.close()
    assert "收到投资款" in summaries and len(summaries) >= 5
    assert dates == sorted(dates)
    assert unbalanced == []


def test_refuses_to_overwrite(agency):
    with pytest.raises(FileExistsError):
        generate_agency(agency.root, clients=2)
    again = generate_agency(agency.root, clients=2, nights=1, overwrite=True)
    assert load_agency(again.root).client_ids == ["C0001", "C0002"]
    assert len(bk.list_backup_sets(again)) == 1
