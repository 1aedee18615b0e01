from __future__ import annotations

import pytest

from ledgerguard.expressions import ExpressionError, compile_condition, grade_rank


@pytest.mark.parametrize(
    ("text", "facts", "expected"),
    [
        ("clients_affected >= 10 or pii_leaked", {"clients_affected": 12}, True),
        ("clients_affected >= 10 or pii_leaked", {"clients_affected": 3}, False),
        ("clients_affected >= 10 or pii_leaked", {"pii_leaked": True}, True),
        ("backup_age_hours > rpo_hours", {"backup_age_hours": 75, "rpo_hours": 24}, True),
        ("backup_age_hours > rpo_hours", {"backup_age_hours": 10, "rpo_hours": 24}, False),
        ("outage_minutes > rto_hours * 60", {"outage_minutes": 300, "rto_hours": 4}, True),
        ("pii_people_leaked >= 1_000_000", {"pii_people_leaked": 1_000_000}, True),
        ("pii_people_leaked >= 1e6", {"pii_people_leaked": 999_999}, False),
        ("agency_role in ['entrusted', 'both']", {"agency_role": "both"}, True),
        ("'id_number' in pii_kinds", {"pii_kinds": ["id_number"]}, True),
        ("grade_rank >= grade('较大')", {"grade_rank": 1}, True),
        ("grade_rank >= grade('较大')", {"grade_rank": 0}, False),
        ("true", {}, True),
    ],
)
def test_conditions_evaluate(text, facts, expected):
    assert compile_condition(text).evaluate(facts) is expected


@pytest.mark.parametrize(
    "text",
    [
        "backup_age_hours > rpo_hours",
        "backup_age_hours + 1 > 3",
        "not_there.attr.deeper",
        "'x' in missing_list",
        "missing < 3 or missing >= 3",
        "missing == 'entrusted'",
    ],
)
def test_unknown_facts_are_undefined_and_false(text):
    assert compile_condition(text).evaluate({}) is False


def test_is_defined_and_not_undefined():
    assert compile_condition("x is defined").evaluate({}) is False
    assert compile_condition("x is not defined").evaluate({}) is True
    assert compile_condition("not x").evaluate({}) is True
    assert compile_condition("x != 'entrusted'").evaluate({}) is True


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x >", "syntax error"),
        ("x = 3", "syntax error"),
        ("a b", "syntax error"),
        ("suspected_crime and and", "'and' is a keyword"),
        ("x | nosuchfilter", "nosuchfilter"),
        ("x is nosuchtest", "nosuchtest"),
        ("", "empty condition"),
        ("   ", "empty condition"),
    ],
)
def test_bad_syntax_raises_with_reason(text, reason):
    with pytest.raises(ExpressionError) as info:
        compile_condition(text)
    assert reason in str(info.value)
    assert info.value.expression == text


def test_wrong_fact_type_raises_expression_error():
    with pytest.raises(ExpressionError, match="TypeError"):
        compile_condition("x > 3").evaluate({"x": "ten"})


def test_sandbox_blocks_unsafe_attributes_and_huge_powers():
    # no attribute escapes to Python internals
    assert compile_condition("x.__class__.__mro__").evaluate({"x": 1}) is False
    with pytest.raises(ExpressionError):
        compile_condition("x.__class__.__subclasses__()").evaluate({"x": 1})
    with pytest.raises(ExpressionError, match="too large"):
        compile_condition("2 ** 100000").evaluate({})


def test_names_lists_the_facts_read_not_helpers():
    cond = compile_condition("grade_rank >= grade('较大') and (pii_leaked or x.y > 1)")
    assert cond.names == {"grade_rank", "pii_leaked", "x"}


def test_facts_are_not_mutated():
    facts = {"a": 1}
    compile_condition("a == 1").evaluate(facts)
    assert facts == {"a": 1}


def test_grade_rank_names():
    assert [grade_rank(n) for n in ("一般", "较大", "重大", "特别重大")] == [0, 1, 2, 3]
    assert grade_rank("major") == 2
    with pytest.raises(ValueError, match="unknown regulatory grade"):
        grade_rank("huge")


def test_none_valued_fact_is_unknown():
    cond = compile_condition("backup_age_hours > rpo_hours")
    assert cond.evaluate({"backup_age_hours": None, "rpo_hours": 24}) is False
    assert compile_condition("x is defined").evaluate({"x": None}) is False


def test_a_bare_fact_name_is_a_name_read():
    """A condition (or amount) that is one fact name reads that fact; a misspelling must be caught."""
    assert compile_condition("ransomware").names == {"ransomware"}
    assert compile_condition("not ransomware").names == {"ransomware"}
    assert compile_condition("late_fee_so_far_yuan").value({"late_fee_so_far_yuan": 12.5}) == 12.5
    assert compile_condition("late_fee_so_far_yuan").value({}) is None
