"""Returns still unfiled after the deadline: the 滞纳金 obligation carries the amount accrued so
far (0.05 %/day on the tax due, from the day after the deadline), in the register and the report."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta

import pandas as pd
import pytest

pytestmark = pytest.mark.prefect


def test_late_returns_carry_the_surcharge_so_far(live):
    from flows import filing_backlog
    from ledgerguard.detectors import InjectionContext, get_injector
    from ledgerguard.register import service as register
    from ledgerguard.response.models import FilingBacklogRequest
    from ledgerguard.runtime import get_runtime
    from ledgerguard.sources import filings as src

    runtime = get_runtime()
    agency = runtime.agency
    local_now = datetime.now(agency.tz)
    period = f"{(local_now.replace(day=1) - timedelta(days=1)):%Y-%m}"
    deadline = src.period_deadline(src.calendar_for(), period)
    as_of = deadline + timedelta(days=10, hours=3)  # ten whole days late
    report = get_injector("filing.inject_backlog").inject(
        InjectionContext(agency=agency, resource=f"filings:{period}", now=as_of), count=3, period=period)

    outcome = filing_backlog(FilingBacklogRequest(period=period, observed_at=as_of, source="test",
                                                  remediate=False), return_state=True).result()

    assert outcome.incident_created, outcome.clear_reasons
    tracker = pd.read_csv(agency.filing_tracker_path, dtype={"client_id": str, "period": str})
    unfiled = tracker[(tracker["period"] == period) & (tracker["status"] == "unfiled")]
    assert len(unfiled) >= 3 and report.changes
    expected = round(sum(round(float(t) * 0.0005 * src.days_late(deadline, as_of), 2)
                         for t in unfiled["tax_due"]), 2)
    assert src.days_late(deadline, as_of) >= 10 and expected > 0
    with runtime.session() as db_session:
        rows = {o.obligation_id: o for o in register.list_obligations(db_session=db_session,
                                                                       incident_id=outcome.incident_id)}
    assert rows["late_payment_surcharge"].amount_yuan == pytest.approx(expected, abs=0.01)
    assert any("so far" in line for line in outcome.obligations)
    amount_text = f"¥{expected:,.2f}"
    bodies = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
              for p in live["sink"].directory.glob("*.eml")]
    texts = [part.get_content() for m in bodies for part in m.walk() if part.get_content_type() == "text/html"]
    assert any(amount_text in t for t in texts), amount_text
