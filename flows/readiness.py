"""The weekly readiness check (issue 6): are we ready for the next emergency?"""

from __future__ import annotations

from datetime import date

from prefect import flow

from ledgerguard.readiness.models import ReadinessOutcome
from tasks.readiness import find_readiness_gaps, load_registers, raise_improvements, send_readiness_report


@flow(name="readiness")
def readiness(as_of: date | None = None) -> ReadinessOutcome:
    """Check every readiness register (overdue checks, expired items, unverified contacts,
    regulations past review, people with no drill in 12 months, missing staff check-ins or ones
    asking for support, uneven on-call load), raise an improvement item per gap and send the
    week's report to management. ``as_of``: the day to judge (default: today in the agency's time zone)."""
    registers = load_registers(as_of)
    gaps = find_readiness_gaps(registers)
    raised = raise_improvements(registers, gaps)
    return send_readiness_report(registers, raised)
