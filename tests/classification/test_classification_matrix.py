"""Impact × urgency → priority → level, driven through facts and the real rubric.yaml."""

from __future__ import annotations

from datetime import datetime

import pytest

from ledgerguard.classification import classify
from ledgerguard.models import Level, Priority, Rating

from ledgerguard.calendar import SHANGHAI


def sh(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)

# facts that make the rubric rate impact / urgency at exactly this step (backup_failure has no
# filing deadline, so the calendar cannot add urgency)
IMPACT_FACTS = {"H": {"clients_affected": 12}, "M": {"clients_affected": 3}, "L": {"clients_affected": 1}}
URGENCY_FACTS = {"H": {"attacker_active": True}, "M": {"cost_accruing_daily": True}, "L": {}}

# rubric.md's table, written out independently of the YAML
EXPECTED = [
    ("H", "H", "P1", 1), ("H", "M", "P2", 2), ("H", "L", "P3", 3),
    ("M", "H", "P2", 2), ("M", "M", "P3", 3), ("M", "L", "P4", 4),
    ("L", "H", "P3", 3), ("L", "M", "P4", 4), ("L", "L", "P5", 4),
]


@pytest.mark.parametrize(("impact", "urgency", "priority", "level"), EXPECTED)
def test_matrix_cell(catalog, impact, urgency, priority, level):
    facts = {**IMPACT_FACTS[impact], **URGENCY_FACTS[urgency]}
    assessment = classify(
        entry=catalog.get("backup_failure"), rubric=catalog.rubric, facts=facts,
        detected_at=sh(2026, 11, 5, 10), calendar=catalog.calendar,
    )
    assert assessment.impact == Rating(impact)
    assert assessment.urgency == Rating(urgency)
    assert assessment.priority == Priority(priority)
    assert assessment.level == Level(level)
    matrix_line = [line for line in assessment.fired if line.rule == "matrix"]
    assert len(matrix_line) == 1 and matrix_line[0].value == str(level)
    assert f"{priority}" in matrix_line[0].condition


@pytest.mark.parametrize(("impact", "raised", "level"), [("L", "M", 3), ("M", "H", 2), ("H", "H", 2)])
def test_vip_raises_impact_one_step(catalog, impact, raised, level):
    facts = {**IMPACT_FACTS[impact], **URGENCY_FACTS["M"], "vip": True}
    a = classify(entry=catalog.get("backup_failure"), rubric=catalog.rubric, facts=facts,
                 detected_at=sh(2026, 11, 5, 10), calendar=catalog.calendar)
    assert a.vip_bump is True
    assert a.impact == Rating(raised)
    assert a.level == Level(level)
    vip = [line for line in a.fired if line.rule == "vip"]
    assert vip and vip[0].dimension == "impact" and vip[0].value == raised


def test_highest_rating_wins_and_every_line_is_kept(catalog):
    facts = {"clients_affected": 3, "pii_leaked": True, "cost_accruing_daily": True}
    a = classify(entry=catalog.get("backup_failure"), rubric=catalog.rubric, facts=facts,
                 detected_at=sh(2026, 11, 5, 10), calendar=catalog.calendar)
    assert a.impact == Rating.H and a.urgency == Rating.H
    fired = {(line.rule, line.dimension, line.value) for line in a.fired}
    assert {("clients_2_plus", "impact", "M"), ("pii_leaked", "impact", "H"),
            ("cost_accruing_daily", "urgency", "M"), ("pipl_clock", "urgency", "H")} <= fired
    assert all(line.source == "rubric" for line in a.fired if line.rule in {"pii_leaked", "pipl_clock"})
