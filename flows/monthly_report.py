"""The monthly compliance report (issue 7): the month's response figures from the register and
Prefect's run history, with charts, to management once per month."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from tasks.monthly_report import (
    MonthlyReportOutcome,
    check_month,
    compute_month,
    publish_monthly_report,
    read_month_history,
    read_month_register,
    resolve_month,
)


# The UI's form and the server check the shape; the task's check names the field in its error.
Month = Annotated[str | None, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM, agency time zone",
                                    examples=["2026-11"])]


@flow(name="monthly-report")
def monthly_report(month: Month = None, send: bool = True) -> MonthlyReportOutcome:
    """MTTA and MTTR by type and level, SLA and obligation deadlines met or missed, drill scores,
    open improvement items, delivery rates per channel and the emergency runs by final state, with
    charts, emailed to the management list (once per month and address) and kept under
    ``<home>/reports/monthly/<YYYY-MM>/``. ``month``: YYYY-MM in the agency's time zone (default:
    the previous calendar month); ``send``: false to file the report without emailing it."""
    window = resolve_month(month)
    rows = read_month_register(window)
    history = read_month_history(window)
    consistency = check_month(window, history)
    figures = compute_month(rows, history, consistency)
    return publish_monthly_report(figures, send)
