"""The consistency check (issue 7): the register and Prefect's run history tell the same story."""

from __future__ import annotations

from datetime import datetime

from prefect import flow

from ledgerguard.compliance.consistency import ConsistencyReport
from tasks.consistency import check_register_against_prefect, report_problems


@flow(name="consistency-check")
def consistency_check(start: datetime | None = None, end: datetime | None = None,
                      send: bool = True) -> ConsistencyReport:
    """Every incident opened in [start, end) (default: the last 8 days) has its flow runs and
    Prefect still has them; every emergency run of the range has its register entries. Problems
    go to the management list (once per set of problems) and into an artifact."""
    report = check_register_against_prefect(start, end)
    report_problems(report, send=send)
    return report
