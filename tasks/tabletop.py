"""Tabletop drills (桌面推演): the runbook walked as a conversation. The run pauses with one form
for the grading and one per runbook step; the answers are scored like a live drill's measures."""

from __future__ import annotations

from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import Field, create_model

from ledgerguard.drills import service as drills
from ledgerguard.drills.models import DrillOutcome, TabletopRequest
from ledgerguard.models import utcnow
from ledgerguard.runtime import get_runtime
from tasks.people import FormInput, people_choice, wait_for_person


def grading_form(*, roles: list[str]):
    return create_model(
        "TabletopGrading", __base__=FormInput,
        level=(Literal[1, 2, 3, 4], Field(title="定级 Level you would grade it", description="1 = 一级 … 4 = 四级")),
        first_notified=(Literal[tuple(roles)], Field(title="首先通知 Who is told first (role)")),  # type: ignore[valid-type]
        note=(str, Field("", title="备注 Note", max_length=2000)),
    )


def step_form(*, people: list[str], title: str):
    return create_model(
        "TabletopStep", __base__=FormInput,
        owner=(people_choice(people), Field(title=f"负责人 Who does it: {title}")),
        action=(str, Field(title="做法 What would you do", min_length=1, max_length=4000)),
        minutes=(float, Field(title="预计用时（分钟）Minutes it takes", ge=0, le=7 * 24 * 60)),
        ready=(bool, Field(True, title="就绪 We have what this step needs (access, tools, people)")),
    )


def walk_runbook(request: TabletopRequest, drill_id: str) -> dict[str, Any]:
    """Ask the grading question, then each runbook step in order (in the flow run: its pauses
    are the forms the UI shows). An unanswered form counts as a step nobody could answer."""
    runtime = get_runtime()
    entry = runtime.catalog.get(request.emergency_type)
    scenario = entry.scenario(request.scenario)
    people = [p.id for p in runtime.contacts.people]
    timeout = request.minutes_per_step * 60
    start = open_tabletop(request, drill_id)
    grading = wait_for_person(grading_form(roles=sorted(runtime.catalog.rubric.roles)), timeout_seconds=timeout,
                              key=f"tabletop-{drill_id}-grading")
    steps: list[dict[str, Any]] = []
    for step in entry.runbook:
        title = step.title.zh if runtime.settings.language == "zh-CN" else step.title.en
        answer = wait_for_person(step_form(people=people, title=title), timeout_seconds=timeout,
                                 key=f"tabletop-{drill_id}-{step.id.replace('_', '-')}")
        steps.append({"step_id": step.id, "kind": step.kind.value,
                      **({"answered": True, "owner": answer.owner, "action": answer.action,
                          "minutes": answer.minutes, "ready": answer.ready} if answer else {"answered": False})})
    return {**start, "scenario": scenario.id,
            "grading": ({"level": grading.level, "first_notified": grading.first_notified, "note": grading.note}
                        if grading else None), "steps": steps}


@task(name="tabletop-open", retries=1, cache_policy=NO_CACHE)
def open_tabletop(request: TabletopRequest, drill_id: str) -> dict[str, Any]:
    runtime = get_runtime()
    entry = runtime.catalog.get(request.emergency_type)
    scenario = entry.scenario(request.scenario)
    now = utcnow()
    expected = drills.expected_level(entry=entry, scenario=scenario, rubric=runtime.catalog.rubric,
                                     calendar=runtime.catalog.calendar, at=now)
    with runtime.session() as db_session:
        drills.start_drill(db_session=db_session, drill_id=drill_id, emergency_type=entry.id, scenario_id=scenario.id,
                           mode="tabletop", requested_by=request.facilitator, expected_level=expected,
                           weights=runtime.catalog.drills.weights,
                           flow_run_id=str(flow_run.id) if flow_run.id else None)
    return {"drill_id": drill_id, "expected_level": expected, "started_at": now.isoformat()}


def tabletop_measures(*, entry, answers: dict[str, Any], expected: int, language: str) -> list[drills.Measure]:
    """What a tabletop can show: the grading, how much of the runbook the team could answer and
    was ready for, and whether their time estimates fit the RTO (else the resolve target)."""
    zh = language == "zh-CN"

    def t(zh_text: str, en_text: str) -> str:
        return zh_text if zh else en_text

    steps = answers["steps"]
    grading = answers.get("grading")
    answered = [s for s in steps if s["answered"]]
    ready = [s for s in answered if s["ready"]]
    out = [drills.Measure("level_matched", 1.0 if grading and grading["level"] == expected else 0.0,
                          t(f"定为 {grading['level'] if grading else '—'} 级（预期 {expected} 级）",
                            f"graded {grading['level'] if grading else '—'} (expected {expected})"))]
    out.append(drills.Measure("recovered", len(ready) / len(steps),
                              t(f"{len(ready)}/{len(steps)} 个步骤就绪（权限、工具、人员到位）",
                                f"{len(ready)}/{len(steps)} step(s) ready (access, tools and people at hand)")))
    minutes = sum(float(s.get("minutes") or 0) for s in answered)
    target_hours = entry.sla.rto_hours
    kind = "RTO"
    if not target_hours:
        kind = t("解决时限", "resolve target")
        from ledgerguard.classification.service import sla_targets

        target_hours = sla_targets(entry=entry, rubric=get_runtime().catalog.rubric, level=expected).resolve_hours
    fits = len(answered) == len(steps) and minutes <= float(target_hours) * 60
    out.append(drills.Measure("rto_met", 1.0 if fits else 0.0,
                              t(f"{len(answered)}/{len(steps)} 个步骤预计 {minutes:g} 分钟；{kind} {float(target_hours) * 60:g} 分钟",
                                f"estimated {minutes:g} min for {len(answered)}/{len(steps)} step(s); "
                                f"{kind} {float(target_hours) * 60:g} min"), minutes * 60))
    out.append(drills.Measure("checklist_completion", len(answered) / len(steps),
                              t(f"已回答 {len(answered)}/{len(steps)} 个步骤", f"{len(answered)}/{len(steps)} step(s) answered")
                              + ("" if len(answered) == len(steps) else t("，未回答：", ": unanswered ")
                                 + ", ".join(s["step_id"] for s in steps if not s["answered"]))))
    for name in ("detected", "notified", "acknowledged", "rpo_met", "obligations_complete", "notices_complete"):
        out.append(drills.Measure(name, None, t("桌面推演不涉及", "not exercised by a tabletop")))
    return out


@task(name="tabletop-record", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def record_tabletop(request: TabletopRequest, answers: dict[str, Any]) -> DrillOutcome:
    from datetime import timedelta

    from ledgerguard.improvements import service as improvements
    from tasks.drill import MEASURE_LABELS

    runtime = get_runtime()
    entry = runtime.catalog.get(request.emergency_type)
    policy = runtime.catalog.drills
    language = runtime.settings.language
    measures = tabletop_measures(entry=entry, answers=answers, expected=answers["expected_level"], language=language)
    value = drills.score(measures=measures, weights=policy.weights)
    owner = drills.improvement_owner(contacts=runtime.contacts, policy=policy)
    name = entry.name.zh if language == "zh-CN" else entry.name.en
    items = []
    people = {p.id for p in runtime.contacts.people}
    participants = {s["owner"] for s in answers["steps"] if s.get("owner")} | (
        {request.facilitator} if request.facilitator in people else set())
    with runtime.session() as db_session:
        for m in measures:
            if m.value is None or m.value >= 1:
                continue
            row, created = improvements.raise_item(
                db_session=db_session, source="drill",
                source_key=f"tabletop:{entry.id}:{answers['scenario']}:{m.name}",
                title=(f"桌面推演发现：{name} — {MEASURE_LABELS['zh-CN'][m.name]}未达标" if language == "zh-CN"
                       else f"Tabletop finding: {name} — {MEASURE_LABELS['en'][m.name]} fell short"),
                detail=m.detail, owner=owner, due_at=utcnow() + timedelta(days=policy.improvement_due_days))
            items.append({"id": row.id, "title": row.title, "owner": row.owner, "due_at": row.due_at.isoformat(),
                          "measure": m.name, "new": created})
        drills.finish_drill(db_session=db_session, drill_id=answers["drill_id"], incident_id=None,
                            measures={m.name: m.to_dict() for m in measures} | {"answers": {
                                "value": None, "detail": "the team's answers", "seconds": None,
                                "steps": answers["steps"], "grading": answers.get("grading")}},
                            score_value=value, passed=value >= policy.pass_mark, participants=sorted(participants),
                            level=(answers.get("grading") or {}).get("level"))
    get_run_logger().info("tabletop %s scored %.1f", answers["drill_id"], value)
    return DrillOutcome(drill_id=answers["drill_id"], emergency_type=entry.id, scenario=answers["scenario"],
                        mode="tabletop", expected_level=answers["expected_level"],
                        level=(answers.get("grading") or {}).get("level"), score=value, pass_mark=policy.pass_mark,
                        passed=value >= policy.pass_mark, measures={m.name: m.to_dict() for m in measures},
                        improvements=items, started_at=answers["started_at"])


__all__ = ["grading_form", "open_tabletop", "record_tabletop", "step_form", "tabletop_measures", "walk_runbook"]
