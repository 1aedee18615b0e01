"""Auth, DLP/export and mail-gateway click logs, the HR staff list and the IT account list.

Files (relative to the agency folder; ``data_files:`` in agency.yaml may move them). Logs may be
CSV (header line) or JSONL (one JSON object a line), chosen by the file suffix.

``logs/auth.csv`` (``auth_log``) — one row per authentication event::

    at,user,system,event,result,ip,device_id,region,client_id
    2026-11-05T09:01:12+08:00,wangwei,bookkeeping,login,ok,10.0.0.21,D-wangwei-1,上海,
    ``system``: bookkeeping | mail | vpn | etax (``client_id`` names the client whose e-tax
    credential was used); ``event``: login | mfa | logout; ``result``: ok | fail.

``logs/dlp.csv`` (``dlp_log``) — one row per export / transfer the DLP agent saw::

    at,user,action,rows,client_ids,data_kinds,destination,device_id,file
    ``action``: export | download | print | usb_copy | cloud_upload | email_attachment;
    ``client_ids`` and ``data_kinds`` are ``;``-separated (data kinds: payroll, id_number,
    bank_card, salary, phone, ledger, invoice, tax_return, contacts).

``logs/mail-clicks.csv`` (``mail_clicks``) — the mail gateway's URL-click log::

    at,user,sender,subject,url,verdict,action
    ``verdict``: clean | suspicious | phishing | malware; ``action``: delivered | clicked | blocked.

``hr/staff.csv`` (``hr_staff``): ``staff_id,name,status,hired_on,resigned_on,last_day``
(``status`` active | leaving | left; dates ``YYYY-MM-DD``, empty when not applicable).

``it/accounts.csv`` (``it_accounts``): ``user,name,role,privileged,disabled,mfa_enrolled,
password_changed_at,sessions_revoked_at,note``.

Timestamps are ISO 8601; one without an offset is read as the agency's local time. Every reader
returns a DataFrame with typed columns (``at`` as UTC datetimes) and reads only the columns it
is asked for; bad input raises :class:`AgencyDataError` naming the file, the line and the column.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from ledgerguard.agency.models import AgencyDataError

__all__ = [
    "ACCOUNTS", "AUTH_LOG", "DLP_LOG", "MAIL_CLICKS", "STAFF", "LOG_SCHEMAS", "PII_KINDS",
    "SENSITIVE_KINDS", "EMPLOYEE_KINDS", "append_rows", "log_path", "read_log", "read_staff",
    "read_accounts", "write_accounts", "split_list", "parse_user_resource", "off_hours_mask",
    "parse_off_hours", "read_typed", "parse_times",
]

# (data_files name, default path)
AUTH_LOG = ("auth_log", "logs/auth.csv")
DLP_LOG = ("dlp_log", "logs/dlp.csv")
MAIL_CLICKS = ("mail_clicks", "logs/mail-clicks.csv")
STAFF = ("hr_staff", "hr/staff.csv")
ACCOUNTS = ("it_accounts", "it/accounts.csv")

# Column kinds: "at" (timestamp), "str", "int", "bool". The first column of each schema is the
# timestamp (or the key) and every column listed here is required in the file.
LOG_SCHEMAS: dict[str, dict[str, str]] = {
    "auth_log": {"at": "at", "user": "str", "system": "str", "event": "str", "result": "str",
                 "ip": "str", "device_id": "str", "region": "str", "client_id": "str"},
    "dlp_log": {"at": "at", "user": "str", "action": "str", "rows": "int", "client_ids": "str",
                "data_kinds": "str", "destination": "str", "device_id": "str", "file": "str"},
    "mail_clicks": {"at": "at", "user": "str", "sender": "str", "subject": "str", "url": "str",
                    "verdict": "str", "action": "str"},
}
STAFF_COLUMNS = ["staff_id", "name", "status", "hired_on", "resigned_on", "last_day"]
ACCOUNT_COLUMNS = ["user", "name", "role", "privileged", "disabled", "mfa_enrolled",
                   "password_changed_at", "sessions_revoked_at", "note"]

# Data kinds that are personal information, and the sensitive ones (PIPL Art. 28: financial
# accounts; GB/T 35273: ID numbers). ``payroll`` is names + salaries (+ usually ID and card).
PII_KINDS = {"payroll", "id_number", "bank_card", "salary", "phone", "contacts"}
SENSITIVE_KINDS = {"payroll", "id_number", "bank_card", "salary"}
# Kinds that are the clients' employees' data (the agency processes it as entrusted processor).
EMPLOYEE_KINDS = {"payroll", "id_number", "bank_card", "salary"}
# payroll as a PII kind name the notices use
KIND_NAMES = {"payroll": "salary"}


def log_path(agency, spec: tuple[str, str]) -> Path:
    return agency.data_file(*spec)


# --------------------------------------------------------------------------- reading
def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".ndjson", ".json")


def _line_of(index: int, jsonl: bool) -> int:
    return index + (1 if jsonl else 2)  # CSV: line 1 is the header


def _read_raw(path: Path, columns: list[str], dtypes: dict[str, Any]) -> tuple[pd.DataFrame, bool]:
    jsonl = _is_jsonl(path)
    if not path.is_file():
        raise AgencyDataError(path, "file not found")
    if jsonl:
        if path.stat().st_size == 0:
            return pd.DataFrame({c: pd.Series([], dtype=str) for c in columns}), True
        try:
            df = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
        except (ValueError, TypeError) as exc:
            raise AgencyDataError(path, _bad_json_line(path) or f"not valid JSON lines: {exc}") from None
        for col in columns:
            if col not in df.columns:
                raise AgencyDataError(path, "required column missing", field=col)
        df = df[columns]
        for col, dt in dtypes.items():
            if dt is str:
                df[col] = df[col].where(df[col].notna(), "").astype(str)
        return df, True
    try:
        header = pd.read_csv(path, nrows=0, encoding="utf-8").columns
    except (ValueError, UnicodeDecodeError) as exc:
        raise AgencyDataError(path, f"not a readable CSV: {exc}") from None
    for col in columns:
        if col not in header:
            raise AgencyDataError(path, "required column missing", field=col)
    try:
        df = pd.read_csv(path, usecols=columns, dtype=dtypes, keep_default_na=False, na_values=[],
                         encoding="utf-8")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise AgencyDataError(path, f"not a readable CSV: {exc}") from None
    return df[columns], False


def _bad_json_line(path: Path) -> str | None:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                return f"line {n}: not valid JSON: {exc}"
            if not isinstance(obj, dict):
                return f"line {n}: expected a JSON object"
    return None


def parse_times(values: pd.Series, *, tz, path: Path, column: str, jsonl: bool = False) -> pd.Series:
    """ISO 8601 text → UTC datetimes; naive values are agency local time. Bad value → error with line."""
    text = values.astype(str)
    try:
        parsed = pd.to_datetime(text, format="ISO8601")
    except (ValueError, TypeError):
        parsed = None
    if parsed is not None and isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return parsed.dt.tz_convert("UTC")
    if parsed is not None and pd.api.types.is_datetime64_dtype(parsed.dtype):
        return parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")
    # Mixed offsets, or something unparseable: parse row by row only to find the culprit.
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise AgencyDataError(path, f"line {_line_of(i, jsonl)}: {text.iloc[i]!r} is not an ISO 8601 "
                                    f"timestamp", field=column)
    return parsed


def read_log(agency, name: str, *, columns: Sequence[str] | None = None,
             since: datetime | None = None, until: datetime | None = None,
             path: Path | None = None) -> pd.DataFrame:
    """Read the log ``name`` (a key of :data:`LOG_SCHEMAS`): only ``columns`` (``at`` always),
    typed, optionally only rows with ``since <= at <= until``; sorted by ``at``."""
    schema = LOG_SCHEMAS[name]
    spec = {"auth_log": AUTH_LOG, "dlp_log": DLP_LOG, "mail_clicks": MAIL_CLICKS}[name]
    path = Path(path) if path is not None else log_path(agency, spec)
    return read_typed(agency, path, schema, name=name, columns=columns, since=since, until=until)


def read_typed(agency, path: Path, schema: dict[str, str], *, name: str = "log",
               columns: Sequence[str] | None = None, since: datetime | None = None,
               until: datetime | None = None) -> pd.DataFrame:
    """Read a CSV/JSONL file with ``schema`` (column → at|str|int): see :func:`read_log`."""
    wanted = list(dict.fromkeys(["at", *(columns or schema)]))
    for col in wanted:
        if col not in schema:
            raise ValueError(f"{name} has no column {col!r}; columns: {', '.join(schema)}")
    dtypes: dict[str, Any] = {c: ("int64" if schema[c] == "int" else str) for c in wanted}
    try:
        df, jsonl = _read_raw(path, wanted, dtypes)
    except AgencyDataError:
        if "int64" not in dtypes.values():
            raise
        # A bad number: read those columns as text so the error names the line.
        df, jsonl = _read_raw(path, wanted, {c: str for c in wanted})
    df["at"] = parse_times(df["at"], tz=agency.tz, path=path, column="at", jsonl=jsonl)
    for col in wanted:
        kind = schema[col]
        if kind == "int":
            df[col] = _ints(df[col], path=path, column=col, jsonl=jsonl)
    if since is not None:
        df = df[df["at"] >= pd.Timestamp(since)]
    if until is not None:
        df = df[df["at"] <= pd.Timestamp(until)]
    if not df["at"].is_monotonic_increasing:
        df = df.sort_values("at", kind="stable")
    return df.reset_index(drop=True)


def _ints(values: pd.Series, *, path: Path, column: str, jsonl: bool) -> pd.Series:
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("int64")
    text = values.astype(str).str.strip() if not pd.api.types.is_numeric_dtype(values.dtype) else values
    nums = pd.to_numeric(text, errors="coerce")
    bad = nums.isna() | (nums < 0) | (nums % 1 != 0)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise AgencyDataError(path, f"line {_line_of(i, jsonl)}: {values.iloc[i]!r} is not a whole "
                                    f"number >= 0", field=column)
    return nums.astype("int64")


def split_list(values: pd.Series) -> pd.Series:
    """``"a;b"`` cells → one row per item (index kept), empty items dropped."""
    items = values.astype(str).str.split(";").explode().str.strip()
    return items[items != ""]


# --------------------------------------------------------------------------- staff and accounts
def _read_table(path: Path, columns: list[str], required: Iterable[str]) -> pd.DataFrame:
    if not path.is_file():
        raise AgencyDataError(path, "file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise AgencyDataError(path, f"not a readable CSV: {exc}") from None
    for col in required:
        if col not in df.columns:
            raise AgencyDataError(path, "required column missing", field=col)
    for col in columns:
        if col not in df.columns:
            df[col] = ""
    return df


def _dates(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    text = df[col].astype(str).str.strip()
    parsed = pd.to_datetime(text.where(text != "", None), format="%Y-%m-%d", errors="coerce")
    bad = parsed.isna() & (text != "")
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise AgencyDataError(path, f"line {i + 2}: {text.iloc[i]!r} is not a date (YYYY-MM-DD)", field=col)
    return parsed.dt.date.where(parsed.notna(), None)


STAFF_STATUSES = {"active", "leaving", "left"}


def read_staff(agency) -> pd.DataFrame:
    """hr/staff.csv: staff_id, name, status, hired_on, resigned_on, last_day (dates or None)."""
    path = agency.data_file(*STAFF)
    df = _read_table(path, STAFF_COLUMNS, ["staff_id", "status", "resigned_on", "last_day"])
    dup = df["staff_id"].duplicated()
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise AgencyDataError(path, f"line {i + 2}: duplicate staff id {df['staff_id'].iloc[i]!r}",
                              field="staff_id")
    bad = ~df["status"].isin(STAFF_STATUSES)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise AgencyDataError(path, f"line {i + 2}: status {df['status'].iloc[i]!r} is not one of "
                                    f"{', '.join(sorted(STAFF_STATUSES))}", field="status")
    for col in ("hired_on", "resigned_on", "last_day"):
        df[col] = _dates(df, col, path)
    return df[STAFF_COLUMNS]


def _bools(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    text = df[col].astype(str).str.strip().str.lower()
    mapped = text.map({"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
                       "": False})
    bad = mapped.isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise AgencyDataError(path, f"line {i + 2}: {df[col].iloc[i]!r} is not true/false", field=col)
    return mapped.astype(bool)


def read_accounts(agency) -> pd.DataFrame:
    """it/accounts.csv with boolean columns parsed (timestamps stay ISO text)."""
    path = agency.data_file(*ACCOUNTS)
    df = _read_table(path, ACCOUNT_COLUMNS, ["user", "role", "privileged", "disabled"])
    dup = df["user"].duplicated()
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise AgencyDataError(path, f"line {i + 2}: duplicate user {df['user'].iloc[i]!r}", field="user")
    for col in ("privileged", "disabled", "mfa_enrolled"):
        df[col] = _bools(df, col, path)
    return df[ACCOUNT_COLUMNS]


def write_accounts(agency, df: pd.DataFrame) -> Path:
    """Write it/accounts.csv atomically (tmp + rename)."""
    path = agency.data_file(*ACCOUNTS)
    out = df[ACCOUNT_COLUMNS].copy()
    for col in ("privileged", "disabled", "mfa_enrolled"):
        out[col] = out[col].map(lambda v: "true" if bool(v) else "false")
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp, index=False, encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- writing
def append_rows(agency, spec: tuple[str, str], rows: list[dict[str, Any]],
                columns: Sequence[str] | None = None) -> Path:
    """Append rows to a log (CSV or JSONL), in the file's own column order."""
    path = agency.data_file(*spec)
    columns = list(columns or LOG_SCHEMAS[spec[0]])
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_jsonl(path):
        with open(path, "a", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({c: r.get(c, "") for c in columns}, ensure_ascii=False) + "\n")
        return path
    if path.is_file() and path.stat().st_size:
        columns = list(pd.read_csv(path, nrows=0, encoding="utf-8").columns)
        header = False
    else:
        header = True
    pd.DataFrame([{c: r.get(c, "") for c in columns} for r in rows], columns=columns).to_csv(
        path, mode="a", header=header, index=False, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- helpers
def parse_user_resource(resource: str, prefix: str) -> str | None:
    """``user:wangwei`` → ``wangwei``; ``user:all`` → None. Anything else is a ValueError."""
    if not resource.startswith(prefix + ":") or not resource[len(prefix) + 1:]:
        raise ValueError(f"resource {resource!r} is not of the form {prefix}:<id> or {prefix}:all")
    value = resource[len(prefix) + 1:]
    return None if value == "all" else value


def parse_off_hours(spec: str) -> tuple[int, int]:
    """``"20:00-07:00"`` → (1200, 420) minutes of the day (start, end); the range may wrap midnight."""
    try:
        start, end = (part.strip() for part in str(spec).split("-"))
        sh, sm = (int(x) for x in start.split(":"))
        eh, em = (int(x) for x in end.split(":"))
        if not (0 <= sh < 24 and 0 <= eh < 24 and 0 <= sm < 60 and 0 <= em < 60):
            raise ValueError
    except ValueError:
        raise ValueError(f"off_hours {spec!r} is not of the form HH:MM-HH:MM") from None
    return sh * 60 + sm, eh * 60 + em


def off_hours_mask(at: pd.Series, spec: str, tz) -> pd.Series:
    """True where the local time of ``at`` falls in the off-hours range or on a non-working day."""
    start, end = parse_off_hours(spec)
    local = at.dt.tz_convert(tz)
    minutes = local.dt.hour * 60 + local.dt.minute
    if start <= end:
        mask = (minutes >= start) & (minutes < end)
    else:
        mask = (minutes >= start) | (minutes < end)
    return mask | _non_working(local)


def _non_working(local: pd.Series) -> pd.Series:
    import chinese_calendar

    days = local.dt.date
    unique = pd.unique(days)
    off = {}
    for d in unique:
        try:
            off[d] = not chinese_calendar.is_workday(d)
        except NotImplementedError:
            off[d] = d.weekday() >= 5
    return days.map(off).astype(bool)


def window_start(now: datetime, *, hours: float | None = None, minutes: float | None = None,
                 days: float | None = None) -> datetime:
    return now - timedelta(hours=hours or 0, minutes=minutes or 0, days=days or 0)
