"""The annual-items tracker (年度事项): 工商年报, 企业所得税汇算清缴 and the agency's own 备案.

``annual/annual-items.csv`` (or ``data_files.annual_items``): ``client_id, year, item, status,
submitted_at``. ``year`` is the year the item is *due* (the 2025 annual report is due 2026-06-30:
year 2026). ``item`` is a key of ``annual_deadlines`` in filing-calendar.yaml; ``status`` is
submitted/pending (已报送/未报送 accepted). The agency's own filing uses client_id ``AGENCY``.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.sources import read_text_csv

__all__ = ["AGENCY_ID", "COLUMNS", "FILE", "ITEMS", "read_items", "write_items", "year_from_resource"]

FILE = ("annual_items", "annual/annual-items.csv")
COLUMNS = ["client_id", "year", "item", "status", "submitted_at"]
AGENCY_ID = "AGENCY"
ITEMS = {
    "business_annual_report": {"zh": "工商年报", "en": "annual business report",
                               "consequence_zh": "逾期未报送将被列入经营异常名录",
                               "consequence_en": "listed in the abnormal-operations list (经营异常名录)"},
    "eit_annual_reconciliation": {"zh": "企业所得税汇算清缴", "en": "annual EIT reconciliation",
                                  "consequence_zh": "逾期申报罚款，补税按日加收滞纳金",
                                  "consequence_en": "late-filing fine; a daily surcharge on tax owed"},
    "agency_annual_filing": {"zh": "代理记账机构年度备案", "en": "bookkeeping agency annual filing",
                             "consequence_zh": "影响代理记账资格", "consequence_en": "puts the agency licence at risk"},
}
STATUS_ALIASES = {"submitted": "submitted", "filed": "submitted", "done": "submitted", "已报送": "submitted",
                  "已申报": "submitted", "已完成": "submitted", "pending": "pending", "open": "pending",
                  "unfiled": "pending", "未报送": "pending", "未申报": "pending", "未完成": "pending"}
_CLIENT_RE = re.compile(rf"^(C\d{{4,}}|{AGENCY_ID})$")


def year_from_resource(resource: str) -> int:
    head, sep, value = resource.partition(":")
    if head != "annual" or not sep or not re.fullmatch(r"\d{4}", value):
        raise ValueError(f"resource {resource!r} is not of the form annual:<year> (e.g. annual:2026)")
    return int(value)


def items_path(agency: Any) -> Path:
    return agency.data_file(*FILE)


def read_items(agency: Any, path: Path | None = None) -> tuple[Path, pd.DataFrame]:
    """Validated items (``row`` = line number in the file), unknown clients/items rejected."""
    path = Path(path or items_path(agency))
    raw = read_text_csv(path, "the annual-items tracker", COLUMNS[:4])
    if "submitted_at" not in raw.columns:
        raw["submitted_at"] = ""
    raw = raw.map(lambda v: str(v).strip())
    line = pd.Series(raw.index + 2, index=raw.index)
    known = set(agency.client_ids) | {AGENCY_ID}

    def bad(mask: pd.Series, field: str, message: str) -> None:
        if mask.any():
            i = mask.idxmax()
            raise AgencyDataError(path, f"line {int(line[i])}: {raw.at[i, field]!r} {message}", field=field)

    bad(~raw["client_id"].str.match(_CLIENT_RE), "client_id", f"is not a client id (C0001…) or {AGENCY_ID}")
    bad(~raw["client_id"].isin(known), "client_id", f"is not listed in {agency.clients_path.name}")
    bad(~raw["year"].str.fullmatch(r"\d{4}"), "year", "is not a year (YYYY)")
    bad(~raw["item"].isin(ITEMS), "item", f"is not an annual item ({', '.join(ITEMS)})")
    status = raw["status"].map(lambda s: STATUS_ALIASES.get(s.lower() if s.isascii() else s, ""))
    bad(status == "", "status", "is not a status (submitted/pending or 已报送/未报送)")
    when = pd.to_datetime(raw["submitted_at"].where(raw["submitted_at"] != ""), errors="coerce",
                          utc=True, format="ISO8601")
    bad((raw["submitted_at"] != "") & when.isna(), "submitted_at", "is not an ISO date-time with offset")
    bad((status == "submitted") & when.isna(), "submitted_at", "is empty but the item is marked submitted")
    out = pd.DataFrame({"client_id": raw["client_id"], "year": raw["year"].astype(int), "item": raw["item"],
                        "status": status, "submitted_at": when, "row": line})
    dup = out.duplicated(["client_id", "year", "item"])
    bad(dup, "item", "is listed twice for the same client and year")
    return path, out.reset_index(drop=True)


def write_items(path: Path, df: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in df.itertuples():
            at = r.submitted_at
            w.writerow({"client_id": r.client_id, "year": int(r.year), "item": r.item, "status": r.status,
                        "submitted_at": "" if at is None or pd.isna(at) else
                        (at.isoformat(timespec="seconds") if isinstance(at, datetime) else str(at))})
    tmp.replace(path)
    return path
