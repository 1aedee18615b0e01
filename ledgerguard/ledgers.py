"""Client ledgers: real double-entry books in SQLite, amounts in integer cents.

Schema (one file per client)::

    accounts(code TEXT PRIMARY KEY, name TEXT, category TEXT)
    vouchers(id INTEGER PRIMARY KEY, voucher_no TEXT, date TEXT, summary TEXT, preparer TEXT)
    voucher_lines(id INTEGER PRIMARY KEY, voucher_id INTEGER REFERENCES vouchers(id),
                  account_code TEXT REFERENCES accounts(code), debit_cents INTEGER,
                  credit_cents INTEGER, memo TEXT)
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

# 小企业会计准则 (2011) chart of accounts, the part a small client's books use.
CHART_OF_ACCOUNTS: list[tuple[str, str, str]] = [
    ("1001", "库存现金", "asset"),
    ("1002", "银行存款", "asset"),
    ("1012", "其他货币资金", "asset"),
    ("1122", "应收账款", "asset"),
    ("1123", "预付账款", "asset"),
    ("1221", "其他应收款", "asset"),
    ("1403", "原材料", "asset"),
    ("1405", "库存商品", "asset"),
    ("1601", "固定资产", "asset"),
    ("1602", "累计折旧", "asset"),
    ("1801", "长期待摊费用", "asset"),
    ("2001", "短期借款", "liability"),
    ("2202", "应付账款", "liability"),
    ("2203", "预收账款", "liability"),
    ("2211", "应付职工薪酬", "liability"),
    ("2221", "应交税费", "liability"),
    ("2241", "其他应付款", "liability"),
    ("3001", "实收资本", "equity"),
    ("3002", "资本公积", "equity"),
    ("3101", "盈余公积", "equity"),
    ("3103", "本年利润", "equity"),
    ("3104", "利润分配", "equity"),
    ("4001", "生产成本", "cost"),
    ("4101", "制造费用", "cost"),
    ("5001", "主营业务收入", "profit_and_loss"),
    ("5051", "其他业务收入", "profit_and_loss"),
    ("5301", "营业外收入", "profit_and_loss"),
    ("5401", "主营业务成本", "profit_and_loss"),
    ("5402", "其他业务成本", "profit_and_loss"),
    ("5403", "税金及附加", "profit_and_loss"),
    ("5601", "销售费用", "profit_and_loss"),
    ("5602", "管理费用", "profit_and_loss"),
    ("5603", "财务费用", "profit_and_loss"),
    ("5711", "营业外支出", "profit_and_loss"),
    ("5801", "所得税费用", "profit_and_loss"),
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vouchers (
    id INTEGER PRIMARY KEY,
    voucher_no TEXT NOT NULL,
    date TEXT NOT NULL,
    summary TEXT NOT NULL,
    preparer TEXT
);
CREATE TABLE IF NOT EXISTS voucher_lines (
    id INTEGER PRIMARY KEY,
    voucher_id INTEGER NOT NULL REFERENCES vouchers(id),
    account_code TEXT NOT NULL REFERENCES accounts(code),
    debit_cents INTEGER NOT NULL DEFAULT 0,
    credit_cents INTEGER NOT NULL DEFAULT 0,
    memo TEXT
);
CREATE INDEX IF NOT EXISTS ix_voucher_lines_voucher ON voucher_lines(voucher_id);
"""

STATS_SQL = {
    "vouchers": "SELECT COUNT(*) FROM vouchers",
    "totals": "SELECT COUNT(*), COALESCE(SUM(debit_cents), 0), COALESCE(SUM(credit_cents), 0) "
              "FROM voucher_lines",
}


MMAP_BYTES = 1 << 30


class UnbalancedVoucher(ValueError):
    """A voucher whose debits and credits differ."""


@dataclass(frozen=True)
class VoucherLine:
    account_code: str
    debit_cents: int = 0
    credit_cents: int = 0
    memo: str = ""


@dataclass(frozen=True)
class LedgerStats:
    """Counts and the trial balance of one ledger. ``integrity_ok`` False means missing/unreadable."""

    vouchers: int = 0
    lines: int = 0
    debit_cents: int = 0
    credit_cents: int = 0
    balanced: bool = False
    difference_cents: int = 0
    integrity_ok: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, entry: dict[str, Any]) -> list[str]:
        """Fields that differ from a backup manifest entry (empty when they all match)."""
        return [k for k in ("vouchers", "lines", "debit_cents", "credit_cents", "balanced")
                if k in entry and entry[k] != getattr(self, k)]


def connect(path: Path | str, *, read_only: bool = False) -> sqlite3.Connection:
    """Open a ledger file; read-only opens never create a missing file."""
    p = Path(path)
    if read_only:
        return sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
    conn = sqlite3.connect(p)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def create_ledger(path: Path | str, *, page_size: int | None = None) -> Path:
    """Create a ledger with the schema and the chart of accounts (idempotent)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(p)
    try:
        if page_size:
            conn.execute(f"PRAGMA page_size = {int(page_size)}")
        # One transaction: one sync instead of one per statement.
        conn.executescript("BEGIN;\n" + SCHEMA)
        conn.executemany("INSERT OR IGNORE INTO accounts(code, name, category) VALUES (?, ?, ?)",
                         CHART_OF_ACCOUNTS)
        conn.commit()
    finally:
        conn.close()
    return p


def add_vouchers(conn: sqlite3.Connection,
                 vouchers: Iterable[tuple[str, str, str, str, Sequence[VoucherLine]]]) -> int:
    """Insert vouchers ``(voucher_no, date, summary, preparer, lines)``; each must balance.

    Runs inside the caller's transaction; returns the number inserted.
    """
    n = 0
    for voucher_no, date, summary, preparer, lines in vouchers:
        debit = sum(line.debit_cents for line in lines)
        credit = sum(line.credit_cents for line in lines)
        if debit != credit or not lines:
            raise UnbalancedVoucher(f"voucher {voucher_no}: debits {debit} != credits {credit}")
        for line in lines:
            if not isinstance(line.debit_cents, int) or not isinstance(line.credit_cents, int):
                raise TypeError(f"voucher {voucher_no}: amounts must be integer cents")
        cur = conn.execute("INSERT INTO vouchers(voucher_no, date, summary, preparer) VALUES (?, ?, ?, ?)",
                           (voucher_no, date, summary, preparer))
        vid = cur.lastrowid
        conn.executemany(
            "INSERT INTO voucher_lines(voucher_id, account_code, debit_cents, credit_cents, memo) "
            "VALUES (?, ?, ?, ?, ?)",
            [(vid, ln.account_code, ln.debit_cents, ln.credit_cents, ln.memo) for ln in lines])
        n += 1
    return n


def _stats_from_rows(vouchers: int, lines: int, debit: int, credit: int, integrity: str) -> LedgerStats:
    ok = integrity == "ok"
    return LedgerStats(vouchers=int(vouchers), lines=int(lines), debit_cents=int(debit),
                       credit_cents=int(credit), balanced=ok and int(debit) == int(credit),
                       difference_cents=int(debit) - int(credit), integrity_ok=ok,
                       error=None if ok else f"quick_check: {integrity}")


def _is_url(value: str) -> bool:
    return "://" in value.split("?", 1)[0][:40]


def _sqlite_file_stats(path: Path) -> LedgerStats:
    if not path.exists():
        return LedgerStats(error=f"ledger file missing: {path}")
    if not path.is_file():
        return LedgerStats(error=f"not a file: {path}")
    try:
        conn = connect(path, read_only=True)
    except sqlite3.Error as exc:
        return LedgerStats(error=f"cannot open {path}: {exc}")
    try:
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")  # large ledgers: read through mmap, not read()
        checks = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        integrity = "ok" if checks == ["ok"] else "; ".join(map(str, checks[:5]))
        (vouchers,) = conn.execute(STATS_SQL["vouchers"]).fetchone()
        lines, debit, credit = conn.execute(STATS_SQL["totals"]).fetchone()
        return _stats_from_rows(vouchers, lines, debit, credit, integrity)
    except sqlite3.Error as exc:
        return LedgerStats(error=f"{path}: {type(exc).__name__}: {exc}")
    finally:
        conn.close()


def _url_stats(url: str) -> LedgerStats:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url)
    except Exception as exc:  # noqa: BLE001 — a bad URL is reported, not raised
        return LedgerStats(error=f"bad database URL: {exc}")
    try:
        with engine.connect() as conn:
            integrity = "ok"
            if engine.dialect.name == "sqlite":
                checks = [r[0] for r in conn.execute(text("PRAGMA quick_check")).fetchall()]
                integrity = "ok" if checks == ["ok"] else "; ".join(map(str, checks[:5]))
            vouchers = conn.execute(text(STATS_SQL["vouchers"])).scalar_one()
            lines, debit, credit = conn.execute(text(STATS_SQL["totals"])).one()
            return _stats_from_rows(vouchers, lines, debit, credit, integrity)
    except Exception as exc:  # noqa: BLE001 — unreadable database is a finding, not a crash
        return LedgerStats(error=f"{engine.url.render_as_string(hide_password=True)}: "
                                 f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def ledger_stats(url_or_path: Path | str) -> LedgerStats:
    """Voucher/line counts, debit and credit totals and integrity of a ledger.

    Accepts a file path or any SQLAlchemy URL. A missing, unreadable or corrupt ledger returns
    stats with ``integrity_ok=False`` and the error; it never raises.
    """
    if isinstance(url_or_path, str) and _is_url(url_or_path):
        if url_or_path.startswith("sqlite:///") and "?" not in url_or_path:
            # Plain SQLite file URL: open it read-only so a missing file is not created.
            return _sqlite_file_stats(Path(url_or_path[len("sqlite:///"):]))
        return _url_stats(url_or_path)
    return _sqlite_file_stats(Path(url_or_path))


def list_vouchers(path: Path | str) -> list[dict[str, Any]]:
    """All vouchers with their debit total, oldest first (for reports and reconciliation)."""
    conn = connect(path, read_only=True)
    try:
        rows = conn.execute(
            "SELECT v.id, v.voucher_no, v.date, v.summary, v.preparer, "
            "COALESCE(SUM(l.debit_cents), 0) FROM vouchers v LEFT JOIN voucher_lines l "
            "ON l.voucher_id = v.id GROUP BY v.id ORDER BY v.date, v.id").fetchall()
    finally:
        conn.close()
    keys = ("id", "voucher_no", "date", "summary", "preparer", "amount_cents")
    return [dict(zip(keys, r)) for r in rows]


def row_keys(path: Path | str) -> tuple[set[tuple[int, str]], set[int]] | None:
    """``({(voucher id, voucher_no)}, {line id})`` of a ledger file, or None when unreadable.

    Used to reconcile a ledger against a backup copy: keys in the copy but not in the ledger
    were lost, even when new vouchers since the backup hide the drop in the counts.
    """
    p = Path(path)
    if not p.is_file():
        return None
    try:
        conn = connect(p, read_only=True)
        try:
            vouchers = {(int(r[0]), str(r[1])) for r in conn.execute("SELECT id, voucher_no FROM vouchers")}
            lines = {int(r[0]) for r in conn.execute("SELECT id FROM voucher_lines")}
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return vouchers, lines
