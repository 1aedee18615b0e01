"""The filing tracker (申报跟踪表) as agencies keep it — CSV or Excel — checked against the filing
calendar, plus the 滞纳金 arithmetic shared by the filing and money detectors.

The tracker has one row per return: ``client_id, period, tax, status, filed_at, tax_due``
(``tax_due`` in yuan, optional: trackers written before it existed still load, the late-fee
facts are then unknown). Excel workbooks (``.xlsx``, first sheet unless ``sheet`` is given) and
CSV files are read the same way; Chinese headers are accepted (客户编号, 所属期, 税种, 状态,
申报时间, 应纳税额), as are Chinese status and tax names (已申报/未申报, 增值税…).

Bad input raises :class:`AgencyDataError` naming the file, the row (as the spreadsheet numbers
it: the header is row 1) and the column.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.calendar import CalendarError, FilingCalendar, end_of_day, to_shanghai

__all__ = [
    "COLUMNS", "HEADER_ALIASES", "LATE_FEE_RATE_PER_DAY", "Backlog", "backlog", "calendar_for",
    "current_period", "days_late", "late_fee_yuan", "period_deadline", "period_from_resource",
    "read_tracker", "tracker_path", "write_tracker",
]

COLUMNS = ["client_id", "period", "tax", "status", "filed_at", "tax_due"]
REQUIRED = ["client_id", "period", "tax", "status"]

HEADER_ALIASES: dict[str, str] = {
    "客户编号": "client_id", "客户id": "client_id", "客户代码": "client_id", "客户": "client_id",
    "所属期": "period", "税款所属期": "period", "申报期": "period", "期间": "period",
    "税种": "tax", "税目": "tax",
    "状态": "status", "申报状态": "status",
    "申报时间": "filed_at", "申报日期": "filed_at",
    "应纳税额": "tax_due", "应缴税额": "tax_due", "税额": "tax_due", "应纳税额(元)": "tax_due",
    "应纳税额（元）": "tax_due", "tax_due_yuan": "tax_due",
}
STATUS_ALIASES = {"filed": "filed", "已申报": "filed", "已报": "filed", "done": "filed",
                  "unfiled": "unfiled", "未申报": "unfiled", "未报": "unfiled", "待申报": "unfiled",
                  "pending": "unfiled"}
TAX_ALIASES = {"增值税": "vat", "附加税": "surtax", "附加税费": "surtax", "城建税及附加": "surtax",
               "个人所得税": "iit", "个税": "iit", "企业所得税": "cit", "印花税": "stamp"}
TAX_NAMES_ZH = {"vat": "增值税", "surtax": "附加税费", "iit": "个人所得税", "cit": "企业所得税",
                "stamp": "印花税"}

LATE_FEE_RATE_PER_DAY = 0.0005   # 征管法 第32条: 万分之五 per day
_CLIENT_RE = re.compile(r"^C\d{4,}$")
_PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

_CALENDARS: dict[tuple[str, float], FilingCalendar] = {}


# --------------------------------------------------------------------------- calendar helpers
def calendar_for(params: dict[str, Any] | None = None) -> FilingCalendar:
    """The filing calendar: ``params['calendar_file']`` or the catalog's filing-calendar.yaml.

    Cached by path and modification time, so an edited calendar is picked up.
    """
    path = (params or {}).get("calendar_file")
    if not path:
        from ledgerguard.config import get_settings

        path = Path(get_settings().catalog_dir) / "filing-calendar.yaml"
    path = Path(path)
    key = (str(path), path.stat().st_mtime if path.exists() else 0.0)
    if key not in _CALENDARS:
        _CALENDARS[key] = FilingCalendar.load(path)
    return _CALENDARS[key]


def current_period(now: datetime, tz: Any) -> str:
    """The period being declared at ``now``: the month before the local month (YYYY-MM)."""
    local = now.astimezone(tz)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return f"{year}-{month:02d}"


def period_from_resource(resource: str, now: datetime, tz: Any, *, prefix: str = "filings") -> str:
    """``filings:2026-09`` → ``2026-09``; ``filings:current`` → the current period."""
    head, sep, value = resource.partition(":")
    if head != prefix or not sep or not value:
        raise ValueError(f"resource {resource!r} is not of the form {prefix}:<YYYY-MM>"
                         + (f" or {prefix}:current" if prefix == "filings" else ""))
    if value == "current":
        return current_period(now, tz)
    if not _PERIOD_RE.match(value):
        raise ValueError(f"resource {resource!r}: period {value!r} is not YYYY-MM")
    return value


def period_deadline(calendar: FilingCalendar, period: str) -> datetime:
    """End of the deadline day of ``period`` (its returns are due in the following month)."""
    m = _PERIOD_RE.match(period)
    if not m:
        raise ValueError(f"period {period!r} is not YYYY-MM")
    year, month = int(m.group(1)), int(m.group(2))
    year, month = (year, month + 1) if month < 12 else (year + 1, 1)
    days = [d for d in calendar.monthly.get(year, ()) if d.month == month]
    if not days:
        raise CalendarError(f"the filing calendar ({calendar.source}) has no deadline in "
                            f"{year}-{month:02d} for period {period}")
    return end_of_day(days[0])


def days_late(deadline: datetime, now: datetime) -> int:
    """Days of 滞纳 at ``now``: counted from the day after the deadline day, that day included
    (a payment on the first day after the deadline already owes one day). 0 before."""
    local = to_shanghai(now)
    if local <= deadline:
        return 0
    return (local.date() - to_shanghai(deadline).date()).days


def late_fee_yuan(tax_due_yuan: float, deadline: datetime, now: datetime) -> float:
    """滞纳金 so far: 0.05 % per day of the tax due (征管法 第32条), rounded to the fen."""
    return round(float(tax_due_yuan) * LATE_FEE_RATE_PER_DAY * days_late(deadline, now), 2)


# --------------------------------------------------------------------------- reading
def tracker_path(agency: Any) -> Path:
    """Where the tracker lives: ``data_files.filing_tracker`` or agency.yaml's ``filing_tracker``."""
    return agency.data_file("filing_tracker", agency.config.filing_tracker)


def _excel_column(index: int) -> str:
    name, index = "", index + 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(65 + rem) + name
    return name


def _canonical_header(name: Any) -> str:
    text = str(name).strip()
    return HEADER_ALIASES.get(text, HEADER_ALIASES.get(text.lower(), text.lower()))


def _read_raw(path: Path, sheet: str | int | None) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            return pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=object,
                                 engine="openpyxl")
        if suffix == ".xls":
            raise AgencyDataError(path, "old .xls workbooks are not supported; save it as .xlsx")
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except AgencyDataError:
        raise
    except Exception as exc:  # noqa: BLE001 — pandas/openpyxl raise many kinds
        kind = "an Excel workbook" if suffix in (".xlsx", ".xlsm") else "a readable UTF-8 CSV"
        raise AgencyDataError(path, f"not {kind}: {type(exc).__name__}: {exc}") from None


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return ""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _period_text(value: Any) -> str:
    """Periods as typed in Excel: ``2026-09``, ``2026/9``, ``202609``, ``2026年9月`` or a date."""
    if isinstance(value, (datetime, date, pd.Timestamp)) and not pd.isna(value):
        return f"{value.year}-{value.month:02d}"
    text = _cell_text(value)
    m = re.match(r"^(\d{4})\s*(?:[-/.年])?\s*(\d{1,2})\s*月?$", text)
    if m and 1 <= int(m.group(2)) <= 12:
        return f"{m.group(1)}-{int(m.group(2)):02d}"
    return text


def _strip_where_needed(values: pd.Series) -> pd.Series:
    """Strip only the values that start or end with whitespace (high-cardinality columns)."""
    first, last = values.str[:1], values.str[-1:]
    padded = first.str.isspace() | last.str.isspace()
    if padded.any():
        values = values.copy()
        values[padded] = values[padded].str.strip()
    return values


def _map_unique(values: pd.Series, fn) -> pd.Series:
    """``values.map(fn)`` computed once per distinct value (a tracker has a handful of taxes/statuses)."""
    return values.map({v: fn(v) for v in values.unique()})


def _parse_times(text: pd.Series) -> pd.Series:
    """ISO text (with an offset, or naive = Asia/Shanghai local time) → UTC timestamps; NaT for bad."""
    present = text != ""
    has_tz = text.str.contains(r"(?:[+-]\d{2}:?\d{2}|Z)$", regex=True) & present
    result = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    if has_tz.any():
        result[has_tz] = pd.to_datetime(text[has_tz], utc=True, errors="coerce", format="ISO8601")
    naive = present & ~has_tz
    if naive.any():
        local = pd.to_datetime(text[naive], errors="coerce", format="mixed")
        result[naive] = local.dt.tz_localize("Asia/Shanghai").dt.tz_convert("UTC")
    return result


def read_tracker(path: Path | str, *, sheet: str | int | None = None) -> pd.DataFrame:
    """Read and validate a filing tracker (CSV or .xlsx).

    Returns a DataFrame with ``client_id, period, tax, status, filed_at (UTC), tax_due (float or
    NaN), row`` where ``row`` is the row number in the file (header = 1).
    """
    path = Path(path)
    if not path.is_file():
        raise AgencyDataError(path, "file not found (the filing tracker)")
    raw = _read_raw(path, sheet)
    original = {(_canonical_header(c)): (str(c), _excel_column(i)) for i, c in enumerate(raw.columns)}
    raw.columns = [_canonical_header(c) for c in raw.columns]
    if len(set(raw.columns)) != len(raw.columns):
        dup = sorted({c for c in raw.columns if list(raw.columns).count(c) > 1})
        raise AgencyDataError(path, f"row 1: the same column appears twice ({', '.join(dup)})", field=dup[0])
    for name in REQUIRED:
        if name not in raw.columns:
            raise AgencyDataError(path, f"row 1: required column missing (accepted headers: {name} "
                                        f"or {', '.join(k for k, v in HEADER_ALIASES.items() if v == name)})",
                                  field=name)
    raw = raw.reset_index(drop=True)
    # Excel leaves blank trailing rows; a row with every cell empty is not a return.
    present = [c for c in COLUMNS if c in raw.columns]
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        cells = raw[present].map(_cell_text)          # typed cells: dates, numbers, None
    else:
        # Strip each distinct value once: ids, periods, taxes and statuses repeat a lot.
        cells = pd.DataFrame({c: (_map_unique(raw[c].astype(str), str.strip) if c not in ("filed_at", "tax_due")
                                  else _strip_where_needed(raw[c].astype(str))) for c in present}, index=raw.index)
    keep = (cells != "").any(axis=1)
    raw, cells = raw[keep], cells[keep]
    rows = pd.Series(raw.index + 2, index=raw.index)

    def bad(mask: pd.Series, column: str, message: str) -> None:
        if mask.any():
            first = mask.idxmax()
            header, letter = original.get(column, (column, "?"))
            n = int(mask.sum())
            more = f" ({n - 1} more rows like it)" if n > 1 else ""
            value = cells.at[first, column] if column in cells.columns else ""
            raise AgencyDataError(path, f"row {int(rows[first])}, column {header} ({letter}): "
                                        f"{value!r} {message}{more}", field=column)

    out = pd.DataFrame(index=raw.index)
    out["client_id"] = cells["client_id"].str.upper()
    bad(~_map_unique(out["client_id"], lambda v: bool(_CLIENT_RE.match(v))).astype(bool), "client_id",
        "is not a client id (C followed by digits)")
    period = cells["period"].copy()
    odd = ~_map_unique(period, lambda v: bool(_PERIOD_RE.match(v))).astype(bool)
    if odd.any():                                       # 2026/9, 202609, 2026年9月, Excel dates
        period[odd] = raw.loc[odd, "period"].map(_period_text)
    out["period"] = period
    bad(~_map_unique(out["period"], lambda v: bool(_PERIOD_RE.match(v))).astype(bool), "period",
        "is not a period (YYYY-MM)")
    tax = _map_unique(cells["tax"], lambda t: TAX_ALIASES.get(t, t.lower()))
    bad(tax == "", "tax", "is empty (the tax, e.g. vat / 增值税)")
    out["tax"] = tax
    status = _map_unique(cells["status"], lambda s: STATUS_ALIASES.get(s.lower() if s.isascii() else s, ""))
    bad(status == "", "status", "is not a status (filed/unfiled or 已申报/未申报)")
    out["status"] = status
    if "filed_at" in raw.columns:
        text = cells["filed_at"]
        out["filed_at"] = _parse_times(text)
        bad((text != "") & out["filed_at"].isna(), "filed_at", "is not a date/time")
        bad((out["status"] == "filed") & out["filed_at"].isna(), "filed_at",
            "is empty but the return is marked filed")
    else:
        out["filed_at"] = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    if "tax_due" in raw.columns:
        text = cells["tax_due"]
        due = pd.to_numeric(text.where(text != ""), errors="coerce")
        retry = (text != "") & due.isna()
        if retry.any():                                  # "1,234.50" or "¥1234.5" as typed by people
            cleaned = text[retry].str.replace(",", "", regex=False).str.replace("¥", "", regex=False)
            due[retry] = pd.to_numeric(cleaned, errors="coerce")
        bad((text != "") & due.isna(), "tax_due", "is not an amount in yuan")
        bad(due < 0, "tax_due", "is negative")
        out["tax_due"] = due.astype(float)
    else:
        out["tax_due"] = float("nan")
    dup = out.duplicated(["client_id", "period", "tax"], keep="first")
    bad(dup, "tax", "is listed twice for the same client and period")
    out["row"] = rows.astype(int)
    return out.reset_index(drop=True)


def load(agency: Any, *, params: dict[str, Any] | None = None) -> tuple[Path, pd.DataFrame]:
    """The agency's tracker, validated, with unknown client ids rejected (naming the row)."""
    path = Path((params or {}).get("tracker_file") or tracker_path(agency))
    df = read_tracker(path, sheet=(params or {}).get("sheet"))
    unknown = ~df["client_id"].isin(set(agency.client_ids))
    if unknown.any():
        first = df[unknown].iloc[0]
        raise AgencyDataError(path, f"row {int(first['row'])}, column client_id: unknown client "
                                    f"{first['client_id']!r} (not in {agency.clients_path.name})",
                              field="client_id")
    return path, df


def write_tracker(path: Path | str, df: pd.DataFrame) -> Path:
    """Write the tracker back in the format of ``path`` (CSV or .xlsx), atomically for CSV."""
    path = Path(path)
    out = pd.DataFrame({
        "client_id": df["client_id"], "period": df["period"], "tax": df["tax"], "status": df["status"],
        "filed_at": [("" if pd.isna(v) else pd.Timestamp(v).tz_convert("Asia/Shanghai").isoformat(timespec="seconds")
                      if isinstance(v, (pd.Timestamp, datetime)) else str(v or ""))
                     for v in df["filed_at"]],
        "tax_due": ["" if pd.isna(v) else f"{float(v):.2f}" for v in df.get("tax_due", [float("nan")] * len(df))],
    })
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        out.to_excel(path, index=False, engine="openpyxl")
        return path
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp, index=False, encoding="utf-8", quoting=csv.QUOTE_MINIMAL)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- backlog
@dataclass
class Backlog:
    period: str
    deadline: datetime
    unfiled: pd.DataFrame           # rows of the period still unfiled
    total_returns: int
    months_unfiled: int             # longest run of consecutive periods a client filed nothing
    months_unfiled_clients: list[str]

    @property
    def clients(self) -> list[str]:
        return sorted(set(self.unfiled["client_id"]))

    @property
    def tax_due_known(self) -> bool:
        return bool(len(self.unfiled)) and not self.unfiled["tax_due"].isna().any()

    @property
    def tax_due_yuan(self) -> float | None:
        if not len(self.unfiled):
            return 0.0
        if self.unfiled["tax_due"].isna().all():
            return None
        return round(float(self.unfiled["tax_due"].fillna(0).sum()), 2)


def _previous(period: str) -> str:
    year, month = int(period[:4]), int(period[5:])
    year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return f"{year}-{month:02d}"


def backlog(df: pd.DataFrame, period: str, deadline: datetime,
            taxes: Iterable[str] | None = None) -> Backlog:
    """The unfiled returns of ``period`` and the 非正常户 run (consecutive periods, ending with
    ``period``, in which a client filed none of its returns)."""
    wanted = list(taxes or [])
    sel = df[df["period"] == period]
    if wanted:
        sel = sel[sel["tax"].isin(wanted)]
    unfiled = sel[sel["status"] == "unfiled"]
    # Per client and period: True when nothing at all was filed that period.
    scope = df if not wanted else df[df["tax"].isin(wanted)]
    nothing = (scope.assign(f=scope["status"] == "filed").groupby(["client_id", "period"])["f"].any() == False)  # noqa: E712
    nothing = nothing[nothing]
    runs: dict[str, int] = {}
    if len(nothing):
        idle = set(nothing.index)
        for cid in sorted(set(unfiled["client_id"])):
            n, p = 0, period
            while (cid, p) in idle:
                n, p = n + 1, _previous(p)
            runs[cid] = n
    longest = max(runs.values(), default=0)
    return Backlog(period=period, deadline=deadline, unfiled=unfiled, total_returns=len(sel),
                   months_unfiled=longest,
                   months_unfiled_clients=sorted(c for c, n in runs.items() if n == longest and n >= 2))


def time_left(deadline: datetime, now: datetime) -> float:
    return (deadline - now).total_seconds() / 3600.0


def deadline_passed(deadline: datetime, now: datetime) -> bool:
    return to_shanghai(now) > deadline


def day_after(deadline: datetime) -> date:
    return to_shanghai(deadline).date() + timedelta(days=1)
