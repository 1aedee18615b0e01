"""Drills: a sandbox copy of the agency, the scenario's injection, and the measures and score of
the response the real flow gave. Keyword-only, Prefect-free; the caller owns the transaction.

A drill never touches the production folder: :func:`prepare_sandbox` copies it (checksums of
every file before and after prove it), the injector breaks the copy, and the flow runs on the
copy with the register shared, so the drill incident sits beside real ones, marked ``drill``
and kept out of their metrics.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledgerguard.backups import sha256_file
from ledgerguard.catalog.models import DRILL_MEASURES, CatalogEntry, DrillPolicy, Scenario
from ledgerguard.register import service as register
from ledgerguard.register.models import DrillRecord, Incident, as_utc, new_id, utcnow

__all__ = ["DrillError", "Measure", "Sandbox", "checksums", "drill_dedup_key", "expected_level",
           "drill_moment", "finish_drill",
           "get_drill", "improvement_owner", "inject", "list_drills", "measure", "pick_monthly", "prepare_sandbox",
           "resolve_resource", "score", "start_drill"]

SKIP_DIRS = {"scratch", "__pycache__"}


class DrillError(ValueError):
    """A drill cannot be set up: unknown type or scenario, an injector of another type…"""


@dataclass
class Sandbox:
    root: Path
    agency: Path
    scratch: Path
    production: Path
    production_checksums: dict[str, str] = field(default_factory=dict)


def checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path (the proof a drill left it alone)."""
    out: dict[str, str] = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not (set(path.relative_to(folder).parts[:-1]) & SKIP_DIRS):
            out[path.relative_to(folder).as_posix()] = sha256_file(path)
    return out


def prepare_sandbox(*, production: Path, root: Path) -> Sandbox:
    """Copy the agency folder into ``root/agency`` (a fresh folder per drill)."""
    production, root = Path(production), Path(root)
    if not (production / "agency.yaml").is_file():
        raise DrillError(f"{production}: not an agency folder (no agency.yaml)")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    before = checksums(production)
    shutil.copytree(production, root / "agency", ignore=shutil.ignore_patterns(*SKIP_DIRS))
    (root / "scratch").mkdir()
    return Sandbox(root=root, agency=root / "agency", scratch=root / "scratch", production=production,
                   production_checksums=before)


def resolve_resource(*, template: str, agency: Any, now: datetime) -> tuple[str, dict[str, str]]:
    """The scenario's resource with its placeholders filled from the sandbox: {client} (a client
    that is not a VIP, so the level is the scenario's own), {period} (last month), {period_before}
    (the month before), {year}, {annual_year} (the year whose 30 June annual deadlines are still
    ahead), {today}."""
    local = now.astimezone(agency.tz)
    plain = [c for c in agency.client_ids if not agency.is_vip(c)] or list(agency.client_ids)
    if not plain:
        raise DrillError(f"{agency.root}: the agency has no clients to drill on")
    last_month = local.replace(day=1) - timedelta(days=1)
    values = {"client": plain[0], "year": f"{local.year}", "today": f"{local:%Y%m%d}",
              "period": f"{last_month:%Y-%m}",
              "period_before": f"{(last_month.replace(day=1) - timedelta(days=1)):%Y-%m}",
              # the year whose annual items (reports due by 30 June) are still ahead
              "annual_year": f"{local.year if (local.month, local.day) <= (6, 30) else local.year + 1}"}
    try:
        return template.format(**values), values
    except (KeyError, IndexError, ValueError) as exc:
        raise DrillError(f"drill resource {template!r}: unknown placeholder {exc}; use "
                         f"{', '.join('{' + k + '}' for k in values)}") from None


def inject(*, entry: CatalogEntry, scenario: Scenario, agency: Any, now: datetime, scratch: Path,
           seed: int = 7) -> tuple[str, list[dict[str, Any]]]:
    """Break the sandbox the scenario's way; returns the resource and what each injector did."""
    from ledgerguard.detectors import InjectionContext, get_injector

    if scenario.drill is None:
        raise DrillError(f"{entry.id}: scenario {scenario.id!r} has no drill: block")
    resource, values = resolve_resource(template=scenario.drill.resource, agency=agency, now=now)
    reports = []
    for step in scenario.drill.inject:
        try:
            injector = get_injector(step.injector)
        except KeyError as exc:
            raise DrillError(f"{entry.id}.{scenario.id}: {exc.args[0]}") from None
        if injector.emergency_type != entry.id:
            raise DrillError(f"{entry.id}.{scenario.id}: injector {step.injector!r} breaks "
                             f"{injector.emergency_type}, not {entry.id}")
        params = {k: _fill(v, values) for k, v in step.params.items()}
        ctx = InjectionContext(agency=agency, resource=step.resource.format(**values) if step.resource else resource,
                               now=now, scratch_dir=scratch, seed=seed)
        reports.append(injector.inject(ctx, **params).to_dict())
    return resource, reports


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def drill_dedup_key(drill_id: str, emergency_type: str, resource: str) -> str:
    """A drill's own incident key: a drill never joins a real incident on the same resource."""
    return f"drill:{drill_id}:{emergency_type}:{resource}"


# --- the register -------------------------------------------------------------------------------

def start_drill(*, db_session: Session, emergency_type: str, scenario_id: str, mode: str, requested_by: str,
                expected_level: int | None, weights: dict[str, float], flow_run_id: str | None = None,
                sandbox: str | None = None, drill_id: str | None = None) -> DrillRecord:
    row = db_session.get(DrillRecord, drill_id) if drill_id else None
    if row is not None:  # a retried task joins its own drill
        return row
    row = DrillRecord(id=drill_id or new_id(), emergency_type=emergency_type, scenario_id=scenario_id, mode=mode,
                      status="running", requested_by=requested_by, started_at=utcnow(), flow_run_id=flow_run_id,
                      sandbox=sandbox, expected_level=expected_level, weights=dict(weights), participants=[])
    db_session.add(row)
    db_session.flush()
    return row


def get_drill(*, db_session: Session, drill_id: str) -> DrillRecord:
    row = db_session.get(DrillRecord, drill_id, populate_existing=True)
    if row is None:
        raise register.NotFound(f"drill {drill_id!r} not found in the register")
    return row


def list_drills(*, db_session: Session, emergency_type: str | None = None,
                status: str | None = None) -> list[DrillRecord]:
    query = select(DrillRecord)
    if emergency_type:
        query = query.where(DrillRecord.emergency_type == emergency_type)
    if status:
        query = query.where(DrillRecord.status == status)
    return list(db_session.scalars(query.order_by(DrillRecord.started_at.desc(), DrillRecord.id)))


def finish_drill(*, db_session: Session, drill_id: str, incident_id: str | None, measures: dict[str, dict],
                 score_value: float | None, passed: bool | None, participants: list[str], level: int | None,
                 report_path: str | None = None, error: str | None = None) -> DrillRecord:
    row = get_drill(db_session=db_session, drill_id=drill_id)
    row.incident_id = incident_id
    row.measures = measures
    row.score = score_value
    row.passed = passed
    row.participants = sorted(set(participants))
    row.level = level
    row.report_path = report_path
    row.error = error
    row.status = "failed" if error else "scored"
    row.finished_at = utcnow()
    db_session.flush()
    return row


# --- measures and score -------------------------------------------------------------------------

@dataclass
class Measure:
    """One measure: ``value`` 0…1, or None when it does not apply to this drill."""

    name: str
    value: float | None
    detail: str
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "detail": self.detail, "seconds": self.seconds}


def _seconds(later: datetime | None, earlier: datetime) -> float | None:
    return None if later is None else max(0.0, (as_utc(later) - as_utc(earlier)).total_seconds())


def measure(*, db_session: Session, incident_id: str | None, entry: CatalogEntry, scenario: Scenario,
            policy: DrillPolicy, started_at: datetime, expected: int, language: str, notices_needed: list[str],
            notice_texts: dict[str, str]) -> list[Measure]:
    """Everything the drill measures, read from the register: times from the injection at
    ``started_at``; the level against ``expected``; obligations, notices and the checklist.
    Details are written in ``language`` (zh-CN or en): they go into the evaluation report."""
    zh = language == "zh-CN"

    def t(zh_text: str, en_text: str) -> str:
        return zh_text if zh else en_text

    if incident_id is None:
        return [Measure("detected", 0.0, t("检测未发现故障：未生成事件", "the detectors found nothing: no incident was opened")),
                Measure("level_matched", 0.0, t(f"未定级（预期 {expected} 级）", f"no level (expected {expected})"))] + [
            Measure(name, 0.0, t("未生成事件", "no incident")) for name in DRILL_MEASURES
            if name not in ("detected", "level_matched", "rpo_met", "notices_complete")]
    incident: Incident = register.get_incident(db_session=db_session, incident_id=incident_id)
    timeline = register.get_timeline(db_session=db_session, incident_id=incident_id)
    assessment = incident.assessment or {}
    sla = assessment.get("sla") or {}
    ack_minutes = float(sla.get("ack_minutes") or 0) or None
    target = t(f"（目标 {ack_minutes:.0f} 分钟）", f" (target {ack_minutes:.0f} min)") if ack_minutes else ""
    out: list[Measure] = []

    seconds = _seconds(incident.opened_at, started_at)
    out.append(Measure("detected", 1.0, t(f"检测器在注入后 {seconds:.0f} 秒确认故障", f"confirmed by the detectors "
                                          f"{seconds:.0f} s after the injection"), seconds))

    classified = next((e.occurred_at for e in timeline if e.kind == "classified"), None)
    matched = incident.level == expected
    out.append(Measure("level_matched", 1.0 if matched else 0.0,
                       t(f"定为 {incident.level} 级（预期 {expected} 级）", f"level {incident.level} (expected {expected})"),
                       _seconds(classified, started_at)))

    sent = next((e.occurred_at for e in timeline if e.kind == "notification.sent" and e.stage == "notify"), None)
    seconds = _seconds(sent, started_at)
    in_time = seconds is not None and (ack_minutes is None or seconds <= ack_minutes * 60)
    out.append(Measure("notified", 1.0 if in_time else 0.0,
                       (t(f"首次通知于 {seconds:.0f} 秒后送达", f"first notification after {seconds:.0f} s")
                        if seconds is not None else t("未发出任何通知", "no notification went out")) + target, seconds))

    seconds = _seconds(incident.acknowledged_at, started_at)
    in_time = seconds is not None and (ack_minutes is None or seconds <= ack_minutes * 60)
    by = f"{incident.acknowledged_by}（{incident.acknowledged_via}）" if zh else \
        f"{incident.acknowledged_by} via {incident.acknowledged_via}"
    out.append(Measure("acknowledged", 1.0 if in_time else 0.0,
                       (t(f"{by} 于 {seconds:.0f} 秒后确认接手", f"acknowledged by {by} after {seconds:.0f} s")
                        if seconds is not None else t("无人确认接手", "nobody acknowledged")) + target, seconds))

    actions = register.list_actions(db_session=db_session, incident_id=incident_id)
    status_by_step = {a.step_id: a.status for a in actions}
    automatic = [s.id for s in entry.runbook if s.kind.value == "automatic"]
    auto_done = [s for s in automatic if status_by_step.get(s) == "succeeded"]
    recovered_at = incident.mitigated_at or incident.resolved_at
    recovered = recovered_at is not None and len(auto_done) == len(automatic)
    seconds = _seconds(recovered_at, started_at) if recovered else None
    out.append(Measure("recovered", 1.0 if recovered else 0.0,
                       t(f"自动步骤 {len(auto_done)}/{len(automatic)} 成功", f"{len(auto_done)}/{len(automatic)} "
                         f"automatic step(s) succeeded")
                       + (t(f"，{seconds:.0f} 秒后恢复", f", recovered after {seconds:.0f} s") if seconds is not None
                          else t("，未恢复", ", not recovered")), seconds))

    rto_hours = sla.get("rto_hours") or sla.get("resolve_hours")
    kind = "RTO" if sla.get("rto_hours") else t("解决时限", "resolve target")
    if rto_hours:
        met = seconds is not None and seconds <= float(rto_hours) * 3600
        out.append(Measure("rto_met", 1.0 if met else 0.0,
                           f"{kind} {float(rto_hours) * 60:g} " + t("分钟：", "min: ") + (
                               t(f"{seconds / 60:.1f} 分钟内恢复", f"recovered in {seconds / 60:.1f} min")
                               if seconds is not None else t("未恢复", "not recovered")), seconds))
    else:
        out.append(Measure("rto_met", None, t("无 RTO 或解决时限", "no RTO or resolve target")))

    if sla.get("rpo_hours"):
        rpo = f"RPO {float(sla['rpo_hours']):g} h"
        facts: dict[str, Any] = {}
        for finding in register.list_findings(db_session=db_session, incident_id=incident_id):
            facts.update(finding.facts or {})
        if facts.get("restorable_within_rpo") is False:
            out.append(Measure("rpo_met", 0.0, t(f"{rpo}：没有可恢复的 RPO 内副本", f"{rpo}: no copy within it "
                                                                                  f"could be restored")))
        else:
            out.append(Measure("rpo_met", 1.0 if recovered else 0.0,
                               t(f"{rpo}：已在其内恢复", f"{rpo}: restored within it") if recovered else
                               t(f"{rpo}：未恢复，最后副本之后的数据有风险",
                                 f"{rpo}: not restored: data since the last copy at risk")))
    else:
        out.append(Measure("rpo_met", None, t("该类型无 RPO", "the type has no RPO")))

    carried = {o.obligation_id for o in register.list_obligations(db_session=db_session, incident_id=incident_id)}
    wanted = list(scenario.drill.expected_obligations) if scenario.drill else []
    if wanted:
        missing = [o for o in wanted if o not in carried]
        out.append(Measure("obligations_complete", (len(wanted) - len(missing)) / len(wanted),
                           t("预期义务均已记录", "all expected obligations recorded") if not missing
                           else t("缺少义务：", "missing obligation(s): ") + ", ".join(missing)))
    else:
        out.append(Measure("obligations_complete", 1.0 if carried or not entry.obligations else 0.0,
                           t(f"已记录 {len(carried)} 项义务", f"{len(carried)} obligation(s) recorded")))

    if notices_needed:
        found = total = 0
        missing_parts: list[str] = []
        for name in notices_needed:
            phrases = (policy.notice_contents.get(name) or {}).get(language) or []
            text = notice_texts.get(name)
            total += max(1, len(phrases))
            if text is None:
                missing_parts.append(f"{name}: " + t("未起草", "not drafted"))
                continue
            if "{{" in text or "{%" in text:
                missing_parts.append(f"{name}: " + t("含未渲染的模板文本", "unrendered template text"))
                continue
            hits = [p for p in phrases if p.lower() in text.lower()]
            found += len(hits) if phrases else 1
            missing_parts += [f"{name}: {p}" for p in phrases if p not in hits]
        out.append(Measure("notices_complete", found / total,
                           t("告知草稿均已起草且内容齐全", "every notice drafted with its required contents")
                           if not missing_parts else t("缺少：", "missing ") + "; ".join(missing_parts)))
    else:
        out.append(Measure("notices_complete", None, t("本事件无需告知", "the incident needed no notice")))

    done = [s for s in entry.runbook if status_by_step.get(s.id) in ("succeeded", "done")]
    open_steps = ", ".join(s.id for s in entry.runbook if s not in done)
    out.append(Measure("checklist_completion", len(done) / len(entry.runbook),
                       t(f"处置步骤完成 {len(done)}/{len(entry.runbook)}", f"{len(done)}/{len(entry.runbook)} "
                         f"runbook step(s) done")
                       + ("" if not open_steps else t(f"，未完成：{open_steps}", f": open {open_steps}"))))
    return out


def score(*, measures: list[Measure], weights: dict[str, float]) -> float:
    """0…100: the weighted mean of the measures that apply (their weights rescaled)."""
    applicable = [(weights.get(m.name, 0.0), m.value) for m in measures if m.value is not None]
    total = sum(w for w, _ in applicable)
    if total <= 0:
        return 0.0
    return round(100.0 * sum(w * v for w, v in applicable) / total, 1)


def improvement_owner(*, contacts: Any, policy: DrillPolicy) -> str:
    """The person who owns a drill's improvement items: the first owner role someone holds."""
    for role in policy.improvement_owner_roles:
        for person in contacts.people:
            if role in person.roles:
                return person.id
    if contacts.people:
        return contacts.people[0].id
    raise DrillError("contacts.yaml has no people to own the drill's improvement items")


def pick_monthly(*, policy: DrillPolicy, type_ids: list[str], on: datetime) -> str:
    """The monthly drill's type: the rotation (or the catalog, by id) stepped once per month."""
    order = [t for t in (policy.rotation or sorted(type_ids)) if t in type_ids] or sorted(type_ids)
    return order[(on.year * 12 + on.month - 1) % len(order)]


def drill_moment(*, entry: CatalogEntry, scenario: Scenario, calendar: Any, now: datetime) -> datetime:
    """When the drill's data is judged: now, or ``days_before_deadline`` before the type's next
    deadline (the injection is dated then, and the flow judges the sandbox as of then)."""
    from ledgerguard.classification.service import type_deadline

    days = scenario.drill.days_before_deadline if scenario.drill else None
    if days is None:
        return now
    deadline = type_deadline(entry, now, calendar)
    if deadline is None:
        raise DrillError(f"{entry.id}.{scenario.id}: days_before_deadline is set but the type has no deadline")
    return max(now, deadline - timedelta(days=days)).astimezone(now.tzinfo)


def expected_level(*, entry: CatalogEntry, scenario: Scenario, rubric: Any, calendar: Any, at: datetime) -> int:
    """The level the drill should reach: the drill block's own, else the rubric's grade of the
    scenario's facts at the drill's moment (deadlines count from then, as the flow's do)."""
    from ledgerguard.classification.service import classify

    if scenario.drill and scenario.drill.expected_level:
        return scenario.drill.expected_level
    return int(classify(entry=entry, rubric=rubric, facts=scenario.facts, detected_at=at,
                        calendar=calendar).level.value)
