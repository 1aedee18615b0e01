"""Money data of the clients: invoices issued (开票), sales declared (申报), the tax bureau's risk
prompts (风险提示), tax debits (三方协议扣款) and bank-account change requests.

Default files (``data_files`` in agency.yaml may move each):

* ``finance/invoices.csv``     invoice_no, client_id, period, issued_at, amount_yuan, tax_yuan, status
  (valid / void / red — a red-letter 红字 invoice carries negative amounts)
* ``finance/declared.csv``     client_id, period, tax, declared_sales_yuan, declared_tax_yuan, declared_at
* ``finance/risk-prompts.csv`` prompt_id, client_id, period, received_at, risk_type, description,
  tax_amount_yuan, status (open / resolved) — the e-tax bureau's 风险提示 export
* ``finance/tax-debits.csv``   debit_id, client_id, period, tax, amount, status (success / failed /
  queued), reason, attempted_at, attempts, account_no
* ``finance/bank-changes.csv`` request_id, client_id, requested_at, requested_by, channel, old_account,
  new_account, verified_by_callback, status (pending / applied / held / rejected), amount_yuan

Bad input raises :class:`AgencyDataError` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.masking import mask_text
from ledgerguard.sources import read_text_csv

__all__ = ["TABLES", "Table", "mask_account", "read", "write"]


@dataclass(frozen=True)
class Table:
    name: str              # data_files key
    default: str           # default path relative to the agency folder
    columns: dict[str, str]  # column -> kind: client, period, text, money, time, bool, enum:a|b, int
    required: tuple[str, ...]
    key: tuple[str, ...] = ()


TABLES: dict[str, Table] = {
    "invoices": Table("invoices", "finance/invoices.csv",
                      {"invoice_no": "text", "client_id": "client", "period": "period", "issued_at": "time",
                       "amount_yuan": "money", "tax_yuan": "money", "status": "enum:valid|void|red"},
                      ("invoice_no", "client_id", "period", "amount_yuan", "tax_yuan", "status"), ("invoice_no",)),
    "declared": Table("declared", "finance/declared.csv",
                      {"client_id": "client", "period": "period", "tax": "text", "declared_sales_yuan": "money",
                       "declared_tax_yuan": "money", "declared_at": "time"},
                      ("client_id", "period", "tax", "declared_sales_yuan", "declared_tax_yuan"),
                      ("client_id", "period", "tax")),
    "risk_prompts": Table("risk_prompts", "finance/risk-prompts.csv",
                          {"prompt_id": "text", "client_id": "client", "period": "period", "received_at": "time",
                           "risk_type": "text", "description": "text", "tax_amount_yuan": "money",
                           "status": "enum:open|resolved"},
                          ("prompt_id", "client_id", "period", "received_at", "risk_type", "status"), ("prompt_id",)),
    "tax_debits": Table("tax_debits", "finance/tax-debits.csv",
                        {"debit_id": "text", "client_id": "client", "period": "period", "tax": "text",
                         "amount": "money", "status": "enum:success|failed|queued", "reason": "text",
                         "attempted_at": "time", "attempts": "int", "account_no": "text"},
                        ("debit_id", "client_id", "period", "amount", "status"), ("debit_id",)),
    "bank_changes": Table("bank_changes", "finance/bank-changes.csv",
                          {"request_id": "text", "client_id": "client", "requested_at": "time",
                           "requested_by": "text", "channel": "text", "old_account": "text", "new_account": "text",
                           "verified_by_callback": "bool", "status": "enum:pending|applied|held|rejected",
                           "amount_yuan": "money", "note": "text"},
                          ("request_id", "client_id", "requested_at", "requested_by", "channel", "new_account",
                           "verified_by_callback", "status"), ("request_id",)),
}

_CLIENT_RE = r"^C\d{4,}$"
_PERIOD_RE = r"^\d{4}-(0[1-9]|1[0-2])$"
_TRUE = {"true", "yes", "1", "y", "是", "已核实"}
_FALSE = {"false", "no", "0", "n", "否", "未核实", ""}


def path_of(agency: Any, table: str) -> Path:
    t = TABLES[table]
    return agency.data_file(t.name, t.default)


def mask_account(value: Any) -> str:
    """A bank account / card number for summaries and evidence: last 4 digits only."""
    text = re.sub(r"[\s-]", "", str(value or ""))
    if not text:
        return ""
    if len(text) <= 4:
        return "*" * len(text)
    return mask_text(text) if mask_text(text) != text else "*" * (len(text) - 4) + text[-4:]


def read(agency: Any, table: str, *, check_clients: bool = True) -> tuple[Path, pd.DataFrame]:
    """Read and validate one table; ``line`` is the CSV line number (header = 1)."""
    spec = TABLES[table]
    path = path_of(agency, table)
    raw = read_text_csv(path, f"the {table.replace('_', ' ')} export", spec.required)
    raw = raw.map(lambda v: str(v).strip())
    line = pd.Series(raw.index + 2, index=raw.index)
    known = set(agency.client_ids) if check_clients else None

    def bad(mask: pd.Series, col: str, message: str) -> None:
        if mask.any():
            i = mask.idxmax()
            raise AgencyDataError(path, f"line {int(line[i])}, column {col}: {raw.at[i, col]!r} {message}", field=col)

    out = pd.DataFrame(index=raw.index)
    for col, kind in spec.columns.items():
        if col not in raw.columns:
            out[col] = {"money": float("nan"), "int": 0, "bool": False}.get(kind.split(":")[0], "")
            if kind == "time":
                out[col] = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
            continue
        text = raw[col]
        required = col in spec.required
        if required:
            bad(text == "", col, "is empty")
        if kind == "client":
            bad(~text.str.match(_CLIENT_RE), col, "is not a client id (C0001…)")
            if known is not None:
                bad(~text.isin(known), col, f"is not listed in {agency.clients_path.name}")
            out[col] = text
        elif kind == "period":
            bad(~text.str.match(_PERIOD_RE), col, "is not a period (YYYY-MM)")
            out[col] = text
        elif kind == "money":
            clean = text.str.replace(",", "", regex=False).str.replace("¥", "", regex=False)
            value = pd.to_numeric(clean.where(clean != ""), errors="coerce")
            bad((clean != "") & value.isna(), col, "is not an amount in yuan")
            out[col] = value.astype(float)
        elif kind == "int":
            value = pd.to_numeric(text.where(text != ""), errors="coerce")
            bad((text != "") & (value.isna() | (value < 0) | (value % 1 != 0)), col, "is not a whole number")
            out[col] = value.fillna(0).astype(int)
        elif kind == "time":
            value = pd.to_datetime(text.where(text != ""), errors="coerce", utc=True, format="ISO8601")
            bad((text != "") & value.isna(), col, "is not an ISO date-time with offset")
            out[col] = value
        elif kind == "bool":
            low = text.str.lower()
            bad(~low.isin(_TRUE | _FALSE), col, "is not true/false")
            out[col] = low.isin(_TRUE)
        elif kind.startswith("enum:"):
            allowed = kind[5:].split("|")
            low = text.str.lower()
            bad(~low.isin(allowed), col, f"is not one of {', '.join(allowed)}")
            out[col] = low
        else:
            out[col] = text
    if spec.key:
        dup = out.duplicated(list(spec.key))
        bad(dup, spec.key[-1], "is listed twice")
    out["line"] = line.astype(int)
    return path, out.reset_index(drop=True)


def write(path: Path, table: str, df: pd.DataFrame) -> Path:
    """Write a table back (atomic), times as ISO text in Asia/Shanghai."""
    spec = TABLES[table]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(spec.columns))
        w.writeheader()
        for rec in df.to_dict(orient="records"):
            row = {}
            for col, kind in spec.columns.items():
                v = rec.get(col, "")
                if kind == "time":
                    row[col] = "" if v is None or v is pd.NaT or (not isinstance(v, str) and pd.isna(v)) else \
                        pd.Timestamp(v).tz_convert("Asia/Shanghai").isoformat(timespec="seconds") \
                        if not isinstance(v, str) else v
                elif kind == "money":
                    row[col] = "" if v is None or (not isinstance(v, str) and pd.isna(v)) else f"{float(v):.2f}"
                elif kind == "bool":
                    row[col] = "true" if v is True or str(v).lower() in _TRUE else "false"
                else:
                    row[col] = "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)
            w.writerow(row)
    tmp.replace(path)
    return path
