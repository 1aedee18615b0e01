"""Annual items (工商年报, 汇算清缴, the agency's 备案) for last year and this year (healthy).

An item whose deadline is within ``warn_days`` (+ a margin) or already past is submitted for
every client; one whose deadline is further away is submitted for about half of them, the way
agencies work through the season.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from ledgerguard.calendar import CalendarError
from ledgerguard.detectors.annual import DEFAULT_WARN_DAYS
from ledgerguard.sources import annual as src
from ledgerguard.sources.filings import calendar_for

NAME = "annual"
MARGIN_DAYS = DEFAULT_WARN_DAYS + 3


def generate(ctx) -> dict[str, Any]:
    agency = ctx.agency
    rng = ctx.rng(NAME)
    calendar = calendar_for()
    now = ctx.now.astimezone(timezone.utc)
    rows: list[dict[str, Any]] = []
    pending = 0
    for year in (ctx.local_now.year - 1, ctx.local_now.year):
        season_start = datetime(year, 1, 1, 9, tzinfo=ctx.tz)
        for item in src.ITEMS:
            try:
                deadline = calendar.annual_deadline(item, year)
            except CalendarError:
                continue
            settled = (deadline - ctx.now).total_seconds() / 86400 <= MARGIN_DAYS
            owners = [src.AGENCY_ID] if item == "agency_annual_filing" else agency.client_ids
            latest = min(deadline - timedelta(hours=6), ctx.now)
            for cid in owners:
                done = settled or rng.random() < 0.5
                at = ""
                if done:
                    span = max(60, int((latest - season_start).total_seconds()))
                    at = pd.Timestamp(season_start + timedelta(seconds=rng.randint(0, span))).tz_convert("UTC")
                    at = min(at, pd.Timestamp(now))
                pending += not done
                rows.append({"client_id": cid, "year": year, "item": item,
                             "status": "submitted" if done else "pending", "submitted_at": at or pd.NaT})
    path = src.items_path(agency)
    src.write_items(path, pd.DataFrame(rows, columns=src.COLUMNS))
    return {"path": str(path), "rows": len(rows), "pending_far_from_deadline": pending}
