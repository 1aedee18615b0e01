"""Penalty exposure and deadline outcomes (Prefect-free): what an obligation's deadline being met,
missed or still open means in fines and 滞纳金, from catalog/penalties.yaml."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pytest

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def penalties():
    from ledgerguard.compliance.postmortem import load_penalties

    return load_penalties(_catalog_dir())


def _catalog_dir():
    from ledgerguard.config import get_settings

    return get_settings().catalog_dir


def ob(obligation_id, *, status="open", deadline=NOW + timedelta(days=1), met_at=None, immediate=False, amount=None):
    return {"obligation_id": obligation_id, "status": status, "deadline": deadline, "met_at": met_at,
            "immediate": immediate, "amount_yuan": amount}


def test_outcomes_of_a_deadline():
    from ledgerguard.compliance.postmortem import obligation_outcome

    assert obligation_outcome(ob("x"), now=NOW) == "open"
    assert obligation_outcome(ob("x", deadline=NOW - timedelta(hours=1)), now=NOW) == "missed"
    assert obligation_outcome(ob("x", status="met", met_at=NOW), now=NOW) == "met_on_time"
    assert obligation_outcome(ob("x", status="met", deadline=NOW - timedelta(days=2), met_at=NOW), now=NOW) == "met_late"
    # "immediately" is met on time the same day, and never turns missed on its own.
    assert obligation_outcome(ob("x", immediate=True, deadline=NOW - timedelta(hours=3)), now=NOW) == "open"
    assert obligation_outcome(ob("x", status="met", immediate=True, deadline=NOW - timedelta(hours=3), met_at=NOW),
                              now=NOW) == "met_on_time"
    assert obligation_outcome(ob("x", status="waived"), now=NOW) == "waived"


def test_exposure_avoided_incurred_and_at_risk(penalties):
    from ledgerguard.compliance.postmortem import exposure, obligation_outcome

    facts = {"clients_unfiled": 37, "tax_due_yuan": 120000.0}
    obligations = [
        ob("file_on_time", status="met", met_at=NOW),                               # filed in time
        ob("late_payment_surcharge", deadline=NOW - timedelta(days=3)),             # 3 days late, unpaid
        ob("pipl_57"),                                                               # still open
        ob("not_in_penalties"),
    ]
    for o in obligations:
        o["outcome"] = obligation_outcome(o, now=NOW)
    lines = {line.obligation_id: line for line in exposure(penalties=penalties, obligations=obligations, facts=facts,
                                                           now=NOW, language="en")}
    assert set(lines) == {"file_on_time", "late_payment_surcharge", "pipl_57"}
    filed = lines["file_on_time"]
    assert filed.verdict == "avoided" and filed.units == 37 and filed.fine_max_yuan == 37 * 2000
    late = lines["late_payment_surcharge"]
    assert late.verdict == "incurred" and late.days_late == 3
    assert late.surcharge_per_day_yuan == 60.0 and late.surcharge_yuan == 180.0  # 0.05 % × ¥120,000 × 3
    assert lines["pipl_57"].verdict == "at_risk" and lines["pipl_57"].fine_max_yuan == 1_000_000


def test_an_unknown_fact_leaves_the_amount_unknown(penalties):
    from ledgerguard.compliance.postmortem import exposure

    o = ob("late_payment_surcharge", deadline=NOW - timedelta(days=1))
    (line,) = exposure(penalties=penalties, obligations=[o], facts={}, now=NOW, language="zh-CN")
    assert line.verdict == "incurred" and line.surcharge_yuan is None and line.surcharge_per_day_yuan is None


def test_a_broken_penalties_file_is_named_with_its_field(tmp_path):
    from ledgerguard.catalog.service import check_catalog
    from ledgerguard.compliance.postmortem import PostmortemError, load_penalties

    catalog = tmp_path / "catalog"
    shutil.copytree(_catalog_dir(), catalog)
    (catalog / "penalties.yaml").write_text("file_on_time:\n  law: x\n  fine_yuan: {max: -5}\n", encoding="utf-8")
    with pytest.raises(PostmortemError, match=r"penalties.yaml: file_on_time.fine_yuan.max"):
        load_penalties(catalog)
    (catalog / "penalties.yaml").write_text("no_such_duty:\n  law: x\n  count: 1\n  fine_yuan: {max: 5}\n",
                                            encoding="utf-8")
    problems = [str(p) for p in check_catalog(catalog)]
    assert any("penalties.yaml" in p and "no_such_duty" in p for p in problems), problems


def test_history_commands_refuse_to_read_an_empty_ephemeral_server(lg_home, monkeypatch):
    """Without PREFECT_API_URL or `up`'s server, Prefect would start an empty ephemeral server and
    every run the register names would look deleted: the commands say so instead (exit 2)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from typer.testing import CliRunner

    from ledgerguard.cli import app

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # This worker may hold the session's test harness (its URL in Prefect's settings): not here.
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = CliRunner().invoke(app, ["consistency"])
        assert result.exit_code == 2 and "PREFECT_API_URL" in result.output
