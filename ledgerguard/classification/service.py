"""Classify a detection: impact × urgency → priority → level, the regulatory grade apart,
obligations with absolute deadlines, and SLA targets — all from catalog data.

Nothing here knows a particular emergency type: every outcome follows from rubric.yaml and the
type's catalog file. Every rule line that fired is kept as the rationale.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ledgerguard.calendar import CalendarError, FilingCalendar, to_shanghai, working_days_between
from ledgerguard.catalog.models import CatalogEntry, ObligationSpec, Rule, Rubric
from ledgerguard.expressions import Condition, ExpressionError
from ledgerguard.models import (
    Assessment,
    Level,
    Obligation,
    Rating,
    RegulatoryGrade,
    RuleLine,
    SlaTargets,
)

if TYPE_CHECKING:
    from ledgerguard.catalog.service import Catalog

__all__ = ["assess", "classify", "enrich_facts", "obligations_for", "sla_targets"]

log = logging.getLogger(__name__)

RUBRIC_SOURCE = "rubric"


def _zh(language: str) -> bool:
    return language.lower().startswith("zh")


def _as_datetime(value: Any) -> datetime | None:
    """A datetime fact (datetime or ISO text) as aware Shanghai time, or None."""
    if isinstance(value, datetime):
        return to_shanghai(value)
    if isinstance(value, str):
        try:
            return to_shanghai(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _holds(condition: Condition, facts: Mapping[str, Any], where: str) -> bool:
    try:
        return condition.evaluate(facts)
    except ExpressionError as exc:
        # A fact of the wrong type must not stop the response; the condition counts as false.
        log.warning("%s: %s — treated as false", where, exc)
        return False


def _amount(spec: ObligationSpec, facts: Mapping[str, Any], where: str) -> float | None:
    """The obligation's amount so far (yuan, 2 decimals), or None when the facts do not give one."""
    if spec.amount_expression is None:
        return None
    try:
        value = spec.amount_expression.value(facts)
    except ExpressionError as exc:
        log.warning("%s: amount: %s — left out", where, exc)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return round(float(value), 2)


# --------------------------------------------------------------------------- facts
def type_deadline(entry: CatalogEntry, detected_at: datetime, calendar: FilingCalendar | None) -> datetime | None:
    """The statutory deadline that makes this type urgent, next after ``detected_at`` (None: none)."""
    basis = entry.deadline
    try:
        if basis == "none":
            return None
        if basis == "month_end":
            return FilingCalendar.month_end(detected_at)
        if calendar is None:
            return None
        if basis == "monthly":
            return calendar.next_monthly_deadline(detected_at)
        if basis.startswith("annual:"):
            return calendar.next_annual_deadline(basis[len("annual:"):], detected_at)
    except CalendarError as exc:
        log.warning("%s: cannot work out the deadline: %s", entry.id, exc)
    return None


def enrich_facts(
    *,
    entry: CatalogEntry,
    facts: Mapping[str, Any],
    detected_at: datetime,
    calendar: FilingCalendar | None = None,
) -> dict[str, Any]:
    """A copy of ``facts`` with the derived facts added where absent.

    rpo_hours / rto_hours from the type's sla; deadline_at from the type's deadline setting
    (``monthly`` = the next monthly filing deadline after ``detected_at``, ``month_end``,
    ``annual:<name>``, ``none``) unless given — a ``deadline_name`` fact naming an annual
    deadline in the calendar takes precedence over the type's setting; hours_to_deadline and working_days_to_deadline
    from deadline_at unless given. Facts given by the caller always win.
    """
    enriched = dict(facts)
    detected = to_shanghai(detected_at)
    if "rpo_hours" not in enriched and entry.sla.rpo_hours is not None:
        enriched["rpo_hours"] = entry.sla.rpo_hours
    if "rto_hours" not in enriched and entry.sla.rto_hours is not None:
        enriched["rto_hours"] = entry.sla.rto_hours

    deadline = _as_datetime(enriched.get("deadline_at"))
    if deadline is None and "deadline_at" not in enriched:
        name = enriched.get("deadline_name")
        if isinstance(name, str) and calendar is not None:
            try:
                deadline = calendar.next_annual_deadline(name, detected)
            except CalendarError as exc:
                log.warning("%s: %s", entry.id, exc)
        if deadline is None:
            deadline = type_deadline(entry, detected, calendar)
    if deadline is not None:
        enriched["deadline_at"] = deadline
        if "hours_to_deadline" not in enriched:
            enriched["hours_to_deadline"] = round((deadline - detected).total_seconds() / 3600, 2)
        if "working_days_to_deadline" not in enriched:
            try:
                enriched["working_days_to_deadline"] = working_days_between(detected, deadline)
            except CalendarError as exc:
                log.warning("%s: working days unknown: %s", entry.id, exc)
    return enriched


# --------------------------------------------------------------------------- rules
def _fire(
    rules: Iterable[Rule], source: str, facts: Mapping[str, Any], language: str
) -> list[RuleLine]:
    lines: list[RuleLine] = []
    for rule in rules:
        if not _holds(rule.condition, facts, f"{source}: {rule.id}"):
            continue
        for dimension in ("impact", "urgency"):
            value: Rating | None = getattr(rule, dimension)
            if value is not None:
                lines.append(
                    RuleLine(
                        source=source,
                        rule=rule.id,
                        dimension=dimension,
                        value=value.value,
                        condition=rule.when,
                        text=rule.text.get(language),
                    )
                )
    return lines


def _highest(lines: list[RuleLine], dimension: str) -> Rating:
    ratings = [Rating(line.value) for line in lines if line.dimension == dimension]
    return max(ratings, key=lambda r: r.rank) if ratings else Rating.L


def sla_targets(*, entry: CatalogEntry, rubric: Rubric, level: int | Level) -> SlaTargets:
    """The rubric's ack/resolve targets for ``level``, overridden by the type, plus its RTO/RPO."""
    lvl = int(level)
    base = rubric.sla[lvl]
    override = entry.sla.levels.get(lvl)
    ack = (override.ack_minutes if override and override.ack_minutes else None) or base.ack_minutes
    resolve = (override.resolve_hours if override and override.resolve_hours else None) or base.resolve_hours
    return SlaTargets(
        ack_minutes=int(ack),
        resolve_hours=float(resolve),
        rto_hours=entry.sla.rto_hours,
        rpo_hours=entry.sla.rpo_hours,
    )


def _obligation_deadline(
    spec: ObligationSpec,
    *,
    detected: datetime,
    facts: Mapping[str, Any],
    calendar: FilingCalendar | None,
    language: str,
) -> tuple[datetime, str]:
    """Absolute deadline for ``spec`` and a note when it had to fall back to the detection time."""
    base = spec.deadline.base
    offset = timedelta(hours=spec.deadline.hours)
    zh = _zh(language)
    if base == "detected":
        return detected + offset, ""
    if base == "next_filing_deadline":
        if calendar is not None:
            try:
                return calendar.next_monthly_deadline(detected) + offset, ""
            except CalendarError as exc:
                log.warning("%s: %s", spec.id, exc)
        note = "申报期限未知，暂按发现时间计算" if zh else "filing deadline unknown; counted from detection"
        return detected + offset, note
    if base == "deadline":
        at = _as_datetime(facts.get("deadline_at"))
        if at is not None:
            return at + offset, ""
        note = "适用期限未知，暂按发现时间计算" if zh else "deadline unknown; counted from detection"
        return detected + offset, note
    name = base[len("fact:"):]
    at = _as_datetime(facts.get(name))
    if at is not None:
        return at + offset, ""
    note = (
        f"{name} 尚未发生，暂按发现时间计算，发生后顺延"
        if zh
        else f"{name} not yet known; provisionally counted from detection"
    )
    return detected + offset, note


def obligations_for(
    *,
    entry: CatalogEntry,
    rubric: Rubric,
    facts: Mapping[str, Any],
    detected_at: datetime,
    calendar: FilingCalendar | None = None,
    language: str = "zh-CN",
) -> list[Obligation]:
    """Generic (rubric) and type obligations whose ``when`` holds, with absolute deadlines.

    A type obligation with the same id as a rubric one replaces it. ``facts`` should already
    carry the derived facts (regulatory_grade, grade_rank, level…), as :func:`classify` does.
    """
    detected = to_shanghai(detected_at)
    specs: dict[str, tuple[str, ObligationSpec]] = {o.id: (RUBRIC_SOURCE, o) for o in rubric.obligations}
    for o in entry.obligations:
        specs[o.id] = (f"{entry.id}.yaml", o)
    result: list[Obligation] = []
    for source, spec in specs.values():
        if not _holds(spec.condition, facts, f"{source}: obligation {spec.id}"):
            continue
        deadline, fallback = _obligation_deadline(
            spec, detected=detected, facts=facts, calendar=calendar, language=language
        )
        notes = [n for n in (spec.note.get(language) if spec.note else "", fallback) if n]
        amount = _amount(spec, facts, f"{source}: obligation {spec.id}")
        result.append(
            Obligation(
                id=spec.id,
                law=spec.law,
                action=spec.action.get(language),
                to=spec.to.get(language),
                deadline=deadline,
                immediate=spec.deadline.immediate,
                note="；".join(notes) if _zh(language) else "; ".join(notes),
                amount_yuan=amount,
            )
        )
    result.sort(key=lambda o: (o.deadline, o.id))
    return result


# --------------------------------------------------------------------------- classify
def classify(
    *,
    entry: CatalogEntry,
    rubric: Rubric,
    facts: Mapping[str, Any],
    detected_at: datetime,
    calendar: FilingCalendar | None = None,
    language: str = "zh-CN",
) -> Assessment:
    """Rate a detection of ``entry`` with ``facts`` found at ``detected_at``.

    The caller's ``facts`` are not modified. Texts come in ``language`` (zh-CN or en).
    """
    detected = to_shanghai(detected_at)
    zh = _zh(language)
    enriched = enrich_facts(entry=entry, facts=facts, detected_at=detected, calendar=calendar)

    fired = _fire(rubric.rules, RUBRIC_SOURCE, enriched, language)
    fired += _fire(entry.severity.rules, f"{entry.id}.yaml", enriched, language)
    impact = _highest(fired, "impact")
    urgency = _highest(fired, "urgency")
    for dimension, value in (("impact", impact), ("urgency", urgency)):
        if not any(line.dimension == dimension for line in fired):
            fired.append(
                RuleLine(
                    source=RUBRIC_SOURCE,
                    rule=f"{dimension}_default",
                    dimension=dimension,
                    value=value.value,
                    condition="no rule fired",
                    text=("未触发任何规则，默认为 L" if zh else "no rule fired; defaults to L"),
                )
            )

    vip_bump = _holds(rubric.vip.condition, enriched, f"{RUBRIC_SOURCE}: vip")
    if vip_bump:
        raised = impact.raised(rubric.vip.steps)
        fired.append(
            RuleLine(
                source=RUBRIC_SOURCE,
                rule="vip",
                dimension="impact",
                value=raised.value,
                condition=rubric.vip.when,
                text=f"{rubric.vip.text.get(language)}（{impact.value} → {raised.value}）"
                if zh
                else f"{rubric.vip.text.get(language)} ({impact.value} → {raised.value})",
            )
        )
        impact = raised

    priority = rubric.priority(impact, urgency)
    level = Level(rubric.level(priority))
    fired.append(
        RuleLine(
            source=RUBRIC_SOURCE,
            rule="matrix",
            dimension="level",
            value=str(level.value),
            condition=f"impact {impact.value} × urgency {urgency.value} → {priority.value}",
            text=f"影响{impact.value} × 紧急{urgency.value} → {priority.value} → {level.zh}"
            if zh
            else f"impact {impact.value} × urgency {urgency.value} → {priority.value} → {level.en}",
        )
    )

    grade = RegulatoryGrade.GENERAL
    for rule in rubric.grade_rules:
        if _holds(rule.condition, enriched, f"{RUBRIC_SOURCE}: {rule.id}"):
            fired.append(
                RuleLine(
                    source=RUBRIC_SOURCE,
                    rule=rule.id,
                    dimension="grade",
                    value=rule.grade.value,
                    condition=rule.when,
                    text=rule.text.get(language),
                )
            )
            if rule.grade.rank > grade.rank:
                grade = rule.grade

    obligation_facts = {
        **enriched,
        "regulatory_grade": grade.value,
        "grade_rank": grade.rank,
        "level": level.value,
    }
    obligations = obligations_for(
        entry=entry,
        rubric=rubric,
        facts=obligation_facts,
        detected_at=detected,
        calendar=calendar,
        language=language,
    )
    return Assessment(
        impact=impact,
        urgency=urgency,
        priority=priority,
        level=level,
        regulatory_grade=grade,
        vip_bump=vip_bump,
        fired=fired,
        obligations=obligations,
        sla=sla_targets(entry=entry, rubric=rubric, level=level),
    )


def assess(
    *,
    catalog: "Catalog",
    emergency_type: str,
    facts: Mapping[str, Any],
    detected_at: datetime,
    language: str = "zh-CN",
) -> Assessment:
    """:func:`classify` with the entry, rubric and calendar taken from a loaded catalog."""
    return classify(
        entry=catalog.get(emergency_type),
        rubric=catalog.rubric,
        facts=facts,
        detected_at=detected_at,
        calendar=catalog.calendar,
        language=language,
    )
