"""The certificate / UKey inventory: every credential the agency uses to file for its clients.

``certificates/inventory.csv`` (``certificate_inventory``; relative to the agency folder,
``data_files:`` in agency.yaml may move it)::

    client_id,kind,serial,not_after,holder
    C0001,税务UKey,5F3A9C01D2,2027-03-31,张伟

``kind``: 税务UKey | CA证书 | 电子营业执照 | 代理授权 (any text); ``not_after``: a date
(``YYYY-MM-DD``: valid to the end of that day, Asia/Shanghai) or an ISO 8601 timestamp.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.sources import read_text_csv

__all__ = ["INVENTORY", "INVENTORY_COLUMNS", "inventory_path", "read_inventory", "write_inventory"]

INVENTORY = ("certificate_inventory", "certificates/inventory.csv")
INVENTORY_COLUMNS = ["client_id", "kind", "serial", "not_after", "holder"]


def inventory_path(agency) -> Path:
    return agency.data_file(*INVENTORY)


def read_inventory(agency) -> pd.DataFrame:
    """The inventory with ``not_after`` as an aware UTC timestamp (a date = end of day, local)."""
    path = inventory_path(agency)
    df = read_text_csv(path, "the certificate/UKey inventory", INVENTORY_COLUMNS[:4])
    if "holder" not in df.columns:
        df["holder"] = ""
    unknown = ~df["client_id"].map(agency.has_client).astype(bool)
    if unknown.any():
        i = int(unknown.to_numpy().nonzero()[0][0])
        raise AgencyDataError(path, f"line {i + 2}: unknown client {df['client_id'].iloc[i]!r} (not in "
                                    f"{agency.clients_path.name})", field="client_id")
    text = df["not_after"].str.strip()
    is_date = text.str.fullmatch(r"\d{4}-\d{2}-\d{2}")
    dates = pd.to_datetime(text.where(is_date), format="%Y-%m-%d", errors="coerce")
    end_of_day = (dates + pd.Timedelta(hours=23, minutes=59, seconds=59)).dt.tz_localize(agency.tz)
    stamps = pd.to_datetime(text.where(~is_date), format="ISO8601", utc=True, errors="coerce")
    not_after = end_of_day.dt.tz_convert("UTC").where(is_date, stamps)
    bad = not_after.isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise AgencyDataError(path, f"line {i + 2}: {text.iloc[i]!r} is not a date (YYYY-MM-DD) or ISO 8601 "
                                    f"timestamp", field="not_after")
    df["not_after"] = pd.to_datetime(not_after, utc=True)
    return df[INVENTORY_COLUMNS]


def write_inventory(agency, df: pd.DataFrame) -> Path:
    """Write the inventory atomically; ``not_after`` timestamps as local ISO dates/times."""
    path = inventory_path(agency)
    out = df[INVENTORY_COLUMNS].copy()
    if pd.api.types.is_datetime64_any_dtype(out["not_after"]):
        out["not_after"] = out["not_after"].dt.tz_convert(agency.tz).map(lambda t: t.isoformat())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp, index=False, encoding="utf-8")
    os.replace(tmp, path)
    return path
