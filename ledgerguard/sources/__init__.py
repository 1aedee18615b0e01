"""Data adapters of the core: one module per data source the detectors read (probe targets and
logs, facility alarms, vendor register, …). Prefect-free; pandas for tabular data, httpx for probes.

Where a data file lives: ``agency.data_file(<name>, <default relative path>)``; bad input raises
:class:`ledgerguard.agency.models.AgencyDataError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def jsonl_objects(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSON Lines export; a missing file, a
    line that is not JSON or not an object raises AgencyDataError naming ``what``, the file and line."""
    from ledgerguard.agency.models import AgencyDataError

    if not path.is_file():
        raise AgencyDataError(path, f"file not found ({what})")
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AgencyDataError(path, f"line {n}: not valid JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise AgencyDataError(path, f"line {n}: expected a JSON object")
            yield n, obj


def read_text_csv(path: Path, what: str, required: Iterable[str] = (), *, empty_ok: bool = False):
    """A CSV export as text columns (nothing turned into NaN; a BOM is fine). A missing file, an
    unreadable one or a missing required column raises AgencyDataError naming ``what``, the file
    and the column. ``empty_ok``: a zero-byte file is an empty table with the required columns."""
    import pandas as pd

    from ledgerguard.agency.models import AgencyDataError

    if not path.is_file():
        raise AgencyDataError(path, f"file not found ({what})")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        if not empty_ok:
            raise AgencyDataError(path, f"empty file ({what})") from None
        return pd.DataFrame({c: pd.Series(dtype=object) for c in required})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise AgencyDataError(path, f"not a readable CSV: {exc}") from None
    for col in required:
        if col not in df.columns:
            raise AgencyDataError(path, "line 1: required column missing", field=col)
    return df
