"""The post-mortem of one incident: Prefect's run history joined with the register.

From Prefect: the flow runs that touched the incident, their states, task runs, durations, the
warning and error lines of their logs, and their artifacts. From the register: signals,
findings, level and the rules that set it, notifications and their delivery, the
acknowledgement, approvals, runbook actions, obligations and whether each deadline was met. Put
together: one timeline, the impact on clients, the penalty exposure avoided or incurred
(catalog/penalties.yaml), and what a person concluded (root cause, contributing factors,
lessons, action items — `postmortem_reviews`, every edit a new revision).
"""

from __future__ import annotations

import logging
import math
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledgerguard.compliance.models import RunHistory
from ledgerguard.expressions import Condition, ExpressionError, compile_condition
from ledgerguard.masking import mask_text, mask_value
from ledgerguard.register.models import PostmortemReview, as_utc, utcnow

PENALTIES_FILE = "penalties.yaml"
LOG_EXCERPT = 20


class PostmortemError(ValueError):
    """A post-mortem input (review, penalty data) is not usable; the message names the field."""


# --- penalty exposure --------------------------------------------------------------------------


class _Text(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zh: str
    en: str

    def get(self, language: str) -> str:
        return self.zh if language.lower().startswith("zh") else self.en


class FineRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: float = Field(0, ge=0)
    max: float = Field(ge=0)


class PenaltyRule(BaseModel):
    """What missing one obligation costs (see catalog/penalties.yaml)."""

    model_config = ConfigDict(extra="forbid")
    law: str
    per: _Text | None = None
    count: str | int | None = None
    fine_yuan: FineRange | None = None
    surcharge_rate_per_day: float | None = Field(None, gt=0, lt=1)
    base: str | None = None
    text: _Text | None = None
    _count: Condition | None = None
    _base: Condition | None = None

    @field_validator("count", "base")
    @classmethod
    def _expression(cls, value):
        if isinstance(value, str):
            compile_condition(value)  # raises ExpressionError with the reason
        return value

    def count_of(self, facts: dict[str, Any]) -> float | None:
        if self.count is None:
            return None
        if isinstance(self.count, int):
            return float(self.count)
        value = compile_condition(self.count).value(facts)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def base_of(self, facts: dict[str, Any]) -> float | None:
        if not self.base:
            return None
        value = compile_condition(self.base).value(facts)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def load_penalties(catalog_dir: Path) -> dict[str, PenaltyRule]:
    """catalog/penalties.yaml as rules per obligation id; a bad entry names the file and field."""
    path = Path(catalog_dir) / PENALTIES_FILE
    if not path.exists():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PostmortemError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PostmortemError(f"{path}: expected a mapping of obligation id → penalty rule")
    rules: dict[str, PenaltyRule] = {}
    for obligation_id, body in raw.items():
        try:
            rules[str(obligation_id)] = PenaltyRule.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise PostmortemError(f"{path}: {obligation_id}.{field}: {first['msg']}") from exc
        except ExpressionError as exc:
            raise PostmortemError(f"{path}: {obligation_id}: {exc}") from exc
    return rules


Outcome = Literal["met_on_time", "met_late", "missed", "open", "waived"]


def obligation_outcome(obligation: dict[str, Any], *, now: datetime) -> Outcome:
    """Whether the deadline was met: met in time, met late, missed (past and still not met), or
    still open. An "immediately" obligation counts as met on time when met the same day."""
    status = obligation.get("status")
    deadline = obligation.get("deadline")
    deadline = as_utc(deadline) if isinstance(deadline, datetime) else None
    if status == "waived":
        return "waived"
    if status == "met":
        met_at = obligation.get("met_at")
        if deadline is None or met_at is None:
            return "met_on_time"
        slack = timedelta(days=1) if obligation.get("immediate") else timedelta(0)
        return "met_on_time" if as_utc(met_at) <= deadline + slack else "met_late"
    if status == "missed":
        return "missed"
    if deadline is not None and not obligation.get("immediate") and as_utc(now) > deadline:
        return "missed"
    return "open"


class ExposureLine(BaseModel):
    obligation_id: str
    law: str
    outcome: Outcome
    verdict: Literal["avoided", "incurred", "at_risk", "none"]
    units: float | None = None
    per: str = ""
    fine_min_yuan: float | None = None
    fine_max_yuan: float | None = None
    surcharge_per_day_yuan: float | None = None
    days_late: int | None = None
    surcharge_yuan: float | None = None
    recorded_yuan: float | None = None
    """The amount the obligation carries in the register (e.g. 滞纳金 accrued at detection)."""
    text: str = ""


def exposure(*, penalties: dict[str, PenaltyRule], obligations: list[dict[str, Any]], facts: dict[str, Any],
             now: datetime, language: str) -> list[ExposureLine]:
    """Per obligation with a penalty rule: what was at stake and whether it was avoided (met on
    time, waived), incurred (missed or met late: fine range × units, surcharge × days late) or is
    still at risk (open)."""
    lines = []
    for ob in obligations:
        rule = penalties.get(str(ob.get("obligation_id")))
        if rule is None:
            continue
        outcome = obligation_outcome(ob, now=now)
        verdict = {"met_on_time": "avoided", "waived": "avoided", "met_late": "incurred", "missed": "incurred",
                   "open": "at_risk"}[outcome]
        units = rule.count_of(facts)
        line = ExposureLine(obligation_id=str(ob["obligation_id"]), law=rule.law, outcome=outcome, verdict=verdict,
                            units=units, per=rule.per.get(language) if rule.per else "",
                            text=rule.text.get(language) if rule.text else "",
                            recorded_yuan=ob.get("amount_yuan"))
        if rule.fine_yuan and units is not None:
            line.fine_min_yuan = round(rule.fine_yuan.min * units, 2)
            line.fine_max_yuan = round(rule.fine_yuan.max * units, 2)
        base = rule.base_of(facts) if rule.surcharge_rate_per_day else None
        if base is not None and base > 0:
            line.surcharge_per_day_yuan = round(base * rule.surcharge_rate_per_day, 2)
            deadline = ob.get("deadline")
            if verdict == "incurred" and isinstance(deadline, datetime):
                until = as_utc(ob["met_at"]) if ob.get("met_at") else as_utc(now)
                line.days_late = max(1, math.ceil((until - as_utc(deadline)).total_seconds() / 86400))
                line.surcharge_yuan = round(line.surcharge_per_day_yuan * line.days_late, 2)
        lines.append(line)
    return lines


# --- the person's conclusions -------------------------------------------------------------------


class ActionItemInput(BaseModel):
    """One thing to do so it does not happen again."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=3, max_length=300, description="What is to be done")
    owner: str = Field(min_length=1, description="Person id from contacts.yaml who owns it")
    due: date = Field(description="Due date (YYYY-MM-DD)")


class PostmortemReviewInput(BaseModel):
    """What the incident's owner concluded (the Prefect UI renders this as the review form)."""

    model_config = ConfigDict(extra="forbid")
    entered_by: str = Field(min_length=1, description="Person id from contacts.yaml entering the review")
    root_cause: str = Field(min_length=5, max_length=5000, description="根本原因 / root cause")
    contributing_factors: list[str] = Field(default_factory=list, description="促成因素 / contributing factors")
    lessons: str = Field("", max_length=5000, description="经验教训 / lessons learned")
    action_items: list[ActionItemInput] = Field(default_factory=list, description="改进项 / action items")


def latest_review(*, db_session: Session, incident_id: str) -> PostmortemReview | None:
    return db_session.scalars(select(PostmortemReview).where(PostmortemReview.incident_id == incident_id)
                              .order_by(PostmortemReview.revision.desc())).first()


def record_review(*, db_session: Session, incident_id: str, review: PostmortemReviewInput, known_people: set[str],
                  via: str = "cli", flow_run_id: str | None = None, due_default_days: int = 30,
                  now: datetime | None = None) -> PostmortemReview:
    """Store a new revision of the review; each action item opens (or joins) an improvement item
    owned by its owner. People must be in contacts.yaml: an unknown id is refused by name."""
    from ledgerguard.improvements.service import raise_item
    from ledgerguard.register import service as register

    now = as_utc(now) if now else utcnow()
    register.get_incident(db_session=db_session, incident_id=incident_id)
    unknown = sorted({review.entered_by, *(a.owner for a in review.action_items)} - known_people)
    if unknown:
        raise PostmortemError(f"review of incident {incident_id}: unknown person id(s) {', '.join(unknown)} "
                              "(entered_by / action_items[].owner must be people of contacts.yaml)")
    revision = (db_session.scalar(select(func.max(PostmortemReview.revision))
                                  .where(PostmortemReview.incident_id == incident_id)) or 0) + 1
    items = []
    for n, action in enumerate(review.action_items, 1):
        due = datetime.combine(action.due, datetime.min.time()).replace(tzinfo=now.tzinfo)
        item, _created = raise_item(db_session=db_session, source="postmortem",
                          source_key=f"postmortem:{incident_id}:{_slug(action.title)}",
                          title=mask_text(action.title), owner=action.owner, due_at=due,
                          detail=f"post-mortem of incident {incident_id}, revision {revision}",
                          incident_id=incident_id)
        items.append({"n": n, "title": mask_text(action.title), "owner": action.owner,
                      "due": action.due.isoformat(), "improvement_item_id": item.id})
    row = PostmortemReview(incident_id=incident_id, revision=revision, root_cause=mask_text(review.root_cause),
                           contributing_factors=[mask_text(f) for f in review.contributing_factors],
                           lessons=mask_text(review.lessons), action_items=items, entered_by=review.entered_by,
                           entered_at=now, via=via, flow_run_id=flow_run_id)
    db_session.add(row)
    db_session.flush()
    register.append_timeline(db_session=db_session, incident_id=incident_id, stage="record", kind="postmortem.reviewed",
                             actor=review.entered_by, flow_run_id=flow_run_id,
                             message=f"post-mortem review revision {revision}: root cause entered, "
                                     f"{len(items)} action item(s)",
                             data={"revision": revision, "action_items": [i["improvement_item_id"] for i in items]})
    return row


def _slug(text: str) -> str:
    import hashlib

    return hashlib.sha256(" ".join(text.lower().split()).encode("utf-8")).hexdigest()[:16]


# --- the joined record ---------------------------------------------------------------------------


def merged_timeline(*, register_entries: list[dict[str, Any]], history: RunHistory) -> list[dict[str, Any]]:
    """The register's timeline and Prefect's run and task-run transitions, in time order."""
    rows = [{"at": e["occurred_at"], "source": "register", "stage": e["stage"], "kind": e["kind"],
             "actor": e["actor"], "message": e["message"], "flow_run_id": e.get("flow_run_id")}
            for e in register_entries]
    for run in history.runs:
        label = run.flow_name or run.name
        if run.start_time:
            rows.append({"at": run.start_time, "source": "prefect", "stage": "run", "kind": "flow_run.started",
                         "actor": "prefect", "message": f"{label} ({run.name}) started", "flow_run_id": run.id})
        if run.end_time:
            rows.append({"at": run.end_time, "source": "prefect", "stage": "run", "kind": "flow_run.ended",
                         "actor": "prefect", "flow_run_id": run.id,
                         "message": f"{label} ({run.name}) ended {run.state_name} after {run.run_seconds:.1f} s"
                                    + (f": {run.state_message}" if run.ended_badly and run.state_message else "")})
        for tr in run.task_runs:
            if tr.state_type in ("FAILED", "CRASHED") or tr.run_count > 1:
                rows.append({"at": tr.end_time or tr.start_time or run.start_time, "source": "prefect",
                             "stage": "task", "kind": "task_run." + (tr.state_type or "").lower(),
                             "actor": "prefect", "flow_run_id": run.id,
                             "message": f"{tr.name}: {tr.state_name} after {tr.run_count} attempt(s)"})
    rows = [r for r in rows if r["at"] is not None]
    rows.sort(key=lambda r: as_utc(r["at"]))
    return rows


def run_rows(history: RunHistory) -> list[dict[str, Any]]:
    out = []
    for run in history.runs:
        warnings = [log for log in run.logs if log.level >= logging.WARNING]
        out.append({
            "id": run.id, "name": run.name, "flow_name": run.flow_name, "state": run.state_name,
            "state_type": run.state_type, "message": run.state_message, "start": run.start_time, "end": run.end_time,
            "seconds": round(run.run_seconds, 1), "subflow": run.parent_flow_run_id is not None,
            "tasks": [{"name": t.name, "state": t.state_name, "seconds": round(t.run_seconds, 2), "attempts": t.run_count}
                      for t in run.task_runs],
            "task_seconds": round(sum(t.run_seconds for t in run.task_runs), 1),
            "log_lines": len(run.logs),
            "log_excerpt": [{"at": log.at, "level": logging.getLevelName(log.level), "message": log.message[:300]}
                            for log in warnings[:LOG_EXCERPT]],
            "artifacts": [a.key for a in run.artifacts if a.key],
        })
    return out


def delivery_summary(notifications: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per channel: how the response's messages were delivered (the post-mortem's own mails are
    its distribution, not part of the response, and are left out)."""
    per: dict[str, dict[str, Any]] = {}
    for n in notifications:
        if str(n.get("step") or "").startswith("postmortem:"):
            continue
        row = per.setdefault(n["channel"], {"channel": n["channel"], "sent": 0, "failed": 0, "deferred": 0,
                                            "pending": 0, "attempts": 0, "total": 0})
        row[n["status"] if n["status"] in row else "pending"] += 1
        row["attempts"] += n.get("attempts") or 0
        row["total"] += 1
    for row in per.values():
        row["rate"] = round(row["sent"] / row["total"], 3) if row["total"] else None
    return sorted(per.values(), key=lambda r: r["channel"])


def merged_facts(findings: list[dict[str, Any]]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for f in findings:
        facts.update(f.get("facts") or {})
    return facts


def sla_outcome(incident: dict[str, Any], assessment: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    sla = assessment.get("sla") or {}
    opened = incident.get("opened_at")
    out: dict[str, Any] = {"ack_minutes": sla.get("ack_minutes"), "resolve_hours": sla.get("resolve_hours"),
                           "rto_hours": sla.get("rto_hours"), "ack_met": None, "resolve_met": None,
                           "resolve_minutes": None}
    if opened is None:
        return out
    opened = as_utc(opened)
    if sla.get("ack_minutes") is not None:
        acked = incident.get("acknowledged_at")
        limit = opened + timedelta(minutes=sla["ack_minutes"])
        out["ack_met"] = (as_utc(acked) <= limit) if acked else (False if as_utc(now) > limit else None)
    resolved = incident.get("resolved_at") or incident.get("closed_at")
    if resolved:
        out["resolve_minutes"] = round((as_utc(resolved) - opened).total_seconds() / 60, 1)
    if sla.get("resolve_hours") is not None:
        limit = opened + timedelta(hours=sla["resolve_hours"])
        out["resolve_met"] = (as_utc(resolved) <= limit) if resolved else (False if as_utc(now) > limit else None)
    return out


def postmortem_context(*, snapshot: dict[str, Any], signals: list[dict[str, Any]], history: RunHistory,
                       review: PostmortemReview | None, penalties: dict[str, PenaltyRule],
                       clients: list[dict[str, Any]], clients_total: int | None, language: str,
                       now: datetime | None = None) -> dict[str, Any]:
    """Everything the post-mortem templates show (plain data, personal data masked)."""
    now = now or utcnow()
    obligations = [{**o, "outcome": obligation_outcome(o, now=now)} for o in snapshot["obligations"]]
    facts = merged_facts(snapshot["findings"])
    pm = {
        "built_at": now,
        "prefect_api": history.api_url,
        "runs": run_rows(history),
        "runs_missing": history.missing,
        "timeline": merged_timeline(register_entries=snapshot["timeline"], history=history),
        "signals": signals,
        "deliveries": delivery_summary(snapshot["notifications"]),
        "obligations": obligations,
        "exposure": [line.model_dump() for line in exposure(penalties=penalties, obligations=obligations,
                                                            facts=facts, now=now, language=language)],
        "sla": sla_outcome(snapshot["incident"], snapshot["assessment"], now=now),
        "impact": {
            "clients": clients, "clients_count": len(clients), "clients_total": clients_total,
            "pii_people": facts.get("pii_people"), "pii_kinds": facts.get("pii_kinds") or [],
            "facts": {k: v for k, v in sorted(facts.items()) if isinstance(v, (int, float, str, bool))},
        },
        "review": None if review is None else {
            "revision": review.revision, "root_cause": review.root_cause,
            "contributing_factors": list(review.contributing_factors or []), "lessons": review.lessons,
            "action_items": list(review.action_items or []), "entered_by": review.entered_by,
            "entered_at": review.entered_at, "via": review.via},
    }
    totals = {"avoided_max": 0.0, "incurred_max": 0.0, "incurred_surcharge": 0.0, "at_risk_max": 0.0}
    for line in pm["exposure"]:
        if line["verdict"] == "avoided":
            totals["avoided_max"] += line["fine_max_yuan"] or 0
        elif line["verdict"] == "incurred":
            totals["incurred_max"] += line["fine_max_yuan"] or 0
            totals["incurred_surcharge"] += line["surcharge_yuan"] or 0
        elif line["verdict"] == "at_risk":
            totals["at_risk_max"] += line["fine_max_yuan"] or 0
    pm["exposure_totals"] = {k: round(v, 2) for k, v in totals.items()}
    return mask_value(pm)
