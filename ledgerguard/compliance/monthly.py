"""The monthly compliance report's figures, computed with pandas from the two sources: the
register (incidents, obligations, drills, improvement items, notifications) and Prefect's run
history of the month (:class:`~ledgerguard.compliance.models.RunHistory`).

Prefect-free. :func:`read_register` reads the month's rows out of the register into plain
pydantic rows; :func:`compute_figures` turns rows and history into :class:`MonthlyFigures`, plain
numbers and lists only (the DataFrames stay inside), so the figures can be written as JSON,
rendered into the templates and checked against the register row by row.

Definitions (each one is what the report's reader is told, in the templates too):

* **The month** is a calendar month in the agency's time zone: [1st 00:00, next 1st 00:00) local.
* **Incidents** are the ones *opened* in the month. Drill incidents (``drill = true``) are counted
  apart and never enter MTTA, MTTR, SLA or obligation figures.
* **MTTA** = ``acknowledged_at − opened_at``; **MTTR** = ``resolved_at − opened_at`` (an incident
  closed without passing through *resolved* counts from ``closed_at``). In minutes; median and
  mean over the incidents that have the timestamp. Unacknowledged / unresolved ones are counted.
* **SLA**: against the incident's own targets (``assessment.sla``, frozen at its grading; else
  the catalog's targets for its level). *met* = done within the target; *missed* = done late, or
  not done and the target has passed at the moment of the report (``as_of``); *pending* = not
  done and the target has not passed yet.
* **Obligations** of real incidents whose deadline falls in the month: *met on time*
  (``met_at <= deadline``), *met late*, *missed* (marked missed, or still open past the deadline
  at ``as_of``), *open* (deadline still ahead), *waived*.
* **Drills** started in the month, live and tabletop, with their score and pass.
* **Improvement items** open at the month's end (or now, for the running month): opened before
  it and not closed by then; *overdue* = due before that moment.
* **Deliveries**: every notification row created in the month (drill copies and management
  reports included: they use the same channels), per channel: sent, failed, deferred, pending,
  attempts. Delivery rate = sent / (sent + failed): deferred and pending ones are not settled yet.
* **Prefect**: the month's emergency flow runs (tagged ``emergency:*``; drill runs apart) by
  final state per flow, their run time (Prefect's ``total_run_time``) and the runs that failed,
  crashed or were cancelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import BaseModel, Field
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ledgerguard.compliance.models import BAD_STATES, FINAL_STATES, RunHistory
from ledgerguard.register.models import (
    DrillRecord,
    ImprovementItem,
    Incident,
    Notification,
    ObligationRecord,
    as_utc,
    utcnow,
)

__all__ = [
    "DrillRow", "ImprovementRow", "IncidentRow", "MonthWindow", "MonthlyFigures", "NotificationRow",
    "ObligationRow", "RegisterRows", "compute_figures", "month_window", "parse_month", "previous_month",
    "read_register",
]

MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


# --- the month ---------------------------------------------------------------------------------


class MonthWindow(BaseModel):
    """One calendar month in the agency's time zone, as UTC instants [start, end)."""

    month: str = Field(description="YYYY-MM")
    timezone: str
    start: datetime
    end: datetime

    @property
    def slug(self) -> str:
        return self.month


def parse_month(value: str) -> tuple[int, int]:
    """``"2026-11"`` → (2026, 11); a ValueError naming the field otherwise."""
    match = MONTH_RE.match((value or "").strip())
    if not match:
        raise ValueError(f"month: expected YYYY-MM (e.g. 2026-11), got {value!r}")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        raise ValueError(f"month: {value!r} has month {month:02d}; expected 01–12")
    if year < 2000:
        raise ValueError(f"month: {value!r} is before 2000; expected a month the register can hold")
    return year, month


def month_window(*, month: str, tz: str | ZoneInfo) -> MonthWindow:
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    year, mon = parse_month(month)
    nxt = (year + 1, 1) if mon == 12 else (year, mon + 1)
    start = datetime(year, mon, 1, tzinfo=zone)
    end = datetime(nxt[0], nxt[1], 1, tzinfo=zone)
    return MonthWindow(month=f"{year:04d}-{mon:02d}", timezone=zone.key,
                       start=start.astimezone(timezone.utc), end=end.astimezone(timezone.utc))


def previous_month(*, tz: str | ZoneInfo, now: datetime | None = None) -> str:
    """The calendar month before the one ``now`` (default: now) falls in, in the agency's zone:
    what the schedule on the 1st reports."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    local = (now or utcnow()).astimezone(zone).date().replace(day=1)
    last = local - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


def current_month(*, tz: str | ZoneInfo, now: datetime | None = None) -> str:
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    local = (now or utcnow()).astimezone(zone).date()
    return f"{local.year:04d}-{local.month:02d}"


# --- the register's rows -------------------------------------------------------------------------


class IncidentRow(BaseModel):
    id: str
    emergency_type: str
    level: int | None = None
    status: str
    drill: bool = False
    title: str = ""
    opened_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    ack_target_minutes: float | None = None
    resolve_target_hours: float | None = None
    sla_source: str = Field(default="assessment", description="assessment, catalog or none")


class ObligationRow(BaseModel):
    incident_id: str
    obligation_id: str
    emergency_type: str
    law: str = ""
    action: str = ""
    deadline: datetime
    status: str
    met_at: datetime | None = None
    drill: bool = False


class DrillRow(BaseModel):
    id: str
    emergency_type: str
    scenario_id: str
    mode: str
    status: str
    started_at: datetime
    score: float | None = None
    passed: bool | None = None


class ImprovementRow(BaseModel):
    id: str
    source: str
    title: str
    owner: str
    opened_at: datetime
    due_at: datetime
    status: str
    closed_at: datetime | None = None


class NotificationRow(BaseModel):
    id: str
    channel: str
    status: str
    attempts: int = 0
    stage: str = ""
    created_at: datetime
    incident_id: str | None = None
    drill: bool = False


class RegisterRows(BaseModel):
    """What the register holds for one month, as plain rows."""

    window: MonthWindow
    read_at: datetime = Field(default_factory=utcnow, description="when the register was read: the report's as_of")
    incidents: list[IncidentRow] = Field(default_factory=list)
    obligations: list[ObligationRow] = Field(default_factory=list)
    drills: list[DrillRow] = Field(default_factory=list)
    improvements: list[ImprovementRow] = Field(default_factory=list)
    notifications: list[NotificationRow] = Field(default_factory=list)


SlaLookup = Callable[[str, int], tuple[float, float] | None]
"""(emergency type, level) → (ack minutes, resolve hours) from the catalog, or None."""


def catalog_sla_lookup(catalog) -> SlaLookup:
    """The catalog's targets for incidents whose assessment carries none (the classification's
    own rule: the rubric's per-level targets, overridden by the type's)."""
    from ledgerguard.classification.service import sla_targets

    def lookup(emergency_type: str, level: int) -> tuple[float, float] | None:
        try:
            entry = catalog.get(emergency_type)
            targets = sla_targets(entry=entry, rubric=catalog.rubric, level=level)
        except (KeyError, ValueError):
            return None
        return float(targets.ack_minutes), float(targets.resolve_hours)

    return lookup


def _targets(incident: Incident, lookup: SlaLookup | None) -> tuple[float | None, float | None, str]:
    sla = (incident.assessment or {}).get("sla") or {}
    ack, resolve = sla.get("ack_minutes"), sla.get("resolve_hours")
    if ack is not None and resolve is not None:
        return float(ack), float(resolve), "assessment"
    if lookup is not None and incident.level is not None:
        found = lookup(incident.emergency_type, int(incident.level))
        if found is not None:
            return found[0], found[1], "catalog"
    return None, None, "none"


def read_register(*, db_session: Session, window: MonthWindow, sla_lookup: SlaLookup | None = None) -> RegisterRows:
    """The month's rows: incidents opened in it, obligations due in it, drills started in it,
    improvement items that were open at some moment of it, notifications created in it."""
    start, end = as_utc(window.start), as_utc(window.end)
    rows = RegisterRows(window=window, read_at=utcnow())
    for inc in db_session.scalars(select(Incident).where(Incident.opened_at >= start, Incident.opened_at < end)
                                  .order_by(Incident.opened_at)):
        ack, resolve, source = _targets(inc, sla_lookup)
        rows.incidents.append(IncidentRow(
            id=inc.id, emergency_type=inc.emergency_type, level=inc.level, status=inc.status, drill=bool(inc.drill),
            title=inc.title or "", opened_at=inc.opened_at, acknowledged_at=inc.acknowledged_at,
            resolved_at=inc.resolved_at, closed_at=inc.closed_at, ack_target_minutes=ack,
            resolve_target_hours=resolve, sla_source=source))
    query = (select(ObligationRecord, Incident.emergency_type, Incident.drill)
             .join(Incident, Incident.id == ObligationRecord.incident_id)
             .where(ObligationRecord.deadline >= start, ObligationRecord.deadline < end)
             .order_by(ObligationRecord.deadline))
    for ob, etype, drill in db_session.execute(query):
        rows.obligations.append(ObligationRow(
            incident_id=ob.incident_id, obligation_id=ob.obligation_id, emergency_type=etype, law=ob.law or "",
            action=ob.action or "", deadline=ob.deadline, status=ob.status, met_at=ob.met_at, drill=bool(drill)))
    for d in db_session.scalars(select(DrillRecord).where(DrillRecord.started_at >= start, DrillRecord.started_at < end)
                                .order_by(DrillRecord.started_at)):
        rows.drills.append(DrillRow(id=d.id, emergency_type=d.emergency_type, scenario_id=d.scenario_id, mode=d.mode,
                                    status=d.status, started_at=d.started_at, score=d.score, passed=d.passed))
    for item in db_session.scalars(select(ImprovementItem).where(
            ImprovementItem.opened_at < end,
            or_(ImprovementItem.closed_at.is_(None), ImprovementItem.closed_at >= start)).order_by(ImprovementItem.due_at)):
        rows.improvements.append(ImprovementRow(
            id=item.id, source=item.source, title=item.title, owner=item.owner, opened_at=item.opened_at,
            due_at=item.due_at, status=item.status, closed_at=item.closed_at))
    query = (select(Notification, Incident.drill).outerjoin(Incident, Incident.id == Notification.incident_id)
             .where(Notification.created_at >= start, Notification.created_at < end).order_by(Notification.created_at))
    for n, drill in db_session.execute(query):
        rows.notifications.append(NotificationRow(
            id=n.id, channel=n.channel, status=n.status, attempts=n.attempts or 0, stage=n.stage,
            created_at=n.created_at, incident_id=n.incident_id, drill=bool(drill)))
    return rows


# --- the figures -------------------------------------------------------------------------------


class Count(BaseModel):
    key: str
    count: int


class TimeStats(BaseModel):
    """Minutes from opening to acknowledgement (MTTA) or resolution (MTTR) for one group."""

    key: str
    incidents: int = Field(description="incidents in the group")
    measured: int = Field(description="of which have the timestamp")
    median_minutes: float | None = None
    mean_minutes: float | None = None


class IncidentFigures(BaseModel):
    total: int = 0
    drills: int = Field(0, description="drill incidents opened in the month, counted apart")
    by_type: list[Count] = Field(default_factory=list)
    by_level: list[Count] = Field(default_factory=list)
    by_status: list[Count] = Field(default_factory=list)
    by_type_and_level: list[dict[str, Any]] = Field(default_factory=list)
    drills_by_type: list[Count] = Field(default_factory=list)


class MeanTimes(BaseModel):
    overall: TimeStats
    by_type: list[TimeStats] = Field(default_factory=list)
    by_level: list[TimeStats] = Field(default_factory=list)
    not_reached: int = Field(0, description="incidents not acknowledged (MTTA) / not resolved (MTTR) yet")


class SlaTally(BaseModel):
    met: int = 0
    missed: int = 0
    pending: int = 0
    no_target: int = 0


class SlaLevel(BaseModel):
    level: str
    ack: SlaTally
    resolve: SlaTally


class SlaMiss(BaseModel):
    incident_id: str
    emergency_type: str
    level: int | None
    target: str = Field(description="ack or resolve")
    target_minutes: float
    actual_minutes: float | None = Field(None, description="None: not done yet")


class SlaFigures(BaseModel):
    ack: SlaTally
    resolve: SlaTally
    by_level: list[SlaLevel] = Field(default_factory=list)
    misses: list[SlaMiss] = Field(default_factory=list)


class ObligationItem(BaseModel):
    incident_id: str
    obligation_id: str
    emergency_type: str
    law: str
    deadline: datetime
    met_at: datetime | None
    outcome: str


class ObligationFigures(BaseModel):
    total: int = 0
    met_on_time: int = 0
    met_late: int = 0
    missed: int = 0
    open: int = 0
    waived: int = 0
    items: list[ObligationItem] = Field(default_factory=list)


class DrillFigures(BaseModel):
    total: int = 0
    live: int = 0
    tabletop: int = 0
    scored: int = 0
    passed: int = 0
    not_passed: int = 0
    broken: int = Field(0, description="drills that could not run (status failed: no score)")
    mean_score: float | None = None
    items: list[DrillRow] = Field(default_factory=list)


class ImprovementFigures(BaseModel):
    at: datetime = Field(description="the moment judged: the month's end, or now for the running month")
    open: int = 0
    overdue: int = 0
    by_source: list[Count] = Field(default_factory=list)
    overdue_items: list[ImprovementRow] = Field(default_factory=list)


class ChannelDelivery(BaseModel):
    channel: str
    total: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    pending: int = 0
    attempts: int = 0
    delivery_rate: float | None = Field(None, description="percent: sent / (sent + failed)")


class FlowRunFigures(BaseModel):
    flow_name: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    crashed: int = 0
    cancelled: int = 0
    in_progress: int = 0
    median_seconds: float | None = None
    mean_seconds: float | None = None
    max_seconds: float | None = None


class BadRun(BaseModel):
    flow_run_id: str
    name: str
    flow_name: str
    state: str | None
    message: str | None = None
    start_time: datetime | None = None
    emergency_type: str | None = None
    drill: bool = False


class RunFigures(BaseModel):
    total: int = Field(0, description="emergency flow runs of the month, drills excluded")
    drill_runs: int = 0
    by_state: list[Count] = Field(default_factory=list)
    by_flow: list[FlowRunFigures] = Field(default_factory=list)
    bad_runs: list[BadRun] = Field(default_factory=list, description="real runs that failed, crashed or were cancelled")
    drill_bad_runs: list[BadRun] = Field(default_factory=list, description="the same among drill runs")
    median_seconds: float | None = None
    mean_seconds: float | None = None


class MonthlyFigures(BaseModel):
    month: str
    timezone: str
    start: datetime
    end: datetime
    as_of: datetime
    incidents: IncidentFigures
    mtta: MeanTimes
    mttr: MeanTimes
    sla: SlaFigures
    obligations: ObligationFigures
    drills: DrillFigures
    improvements: ImprovementFigures
    delivery: list[ChannelDelivery] = Field(default_factory=list)
    delivery_total: ChannelDelivery
    runs: RunFigures
    consistency: dict[str, Any] | None = Field(
        None, description="the consistency check of the register against Prefect's runs (ConsistencyReport)")


def _round(value: Any, digits: int = 1) -> float | None:
    if value is None or pd.isna(value):
        return None
    return round(float(value), digits)


def _frame(rows: list[BaseModel], columns: list[str]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    return pd.DataFrame([r.model_dump() for r in rows])


def _ts(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def _counts(series: pd.Series) -> list[Count]:
    counts = series.value_counts()
    return [Count(key=str(k), count=int(v)) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]


def _level_key(value: Any) -> str:
    return "?" if value is None or pd.isna(value) else str(int(value))


def _stats(key: str, minutes: pd.Series) -> TimeStats:
    measured = minutes.dropna()
    return TimeStats(key=key, incidents=int(len(minutes)), measured=int(len(measured)),
                     median_minutes=_round(measured.median()) if len(measured) else None,
                     mean_minutes=_round(measured.mean()) if len(measured) else None)


def _mean_times(df: pd.DataFrame, column: str) -> MeanTimes:
    return MeanTimes(
        overall=_stats("all", df[column]),
        by_type=[_stats(str(k), g[column]) for k, g in df.groupby("emergency_type", sort=True)],
        by_level=[_stats(k, g[column]) for k, g in sorted(df.groupby("level_key"), key=lambda kv: kv[0])],
        not_reached=int(df[column].isna().sum()))


def _sla_outcome(minutes: Any, target: Any, elapsed: float) -> str:
    """met / missed / pending / no_target for one incident and one target (both in minutes)."""
    if target is None or pd.isna(target):
        return "no_target"
    if minutes is not None and not pd.isna(minutes):
        return "met" if minutes <= target else "missed"
    return "missed" if elapsed > target else "pending"


def _tally(series: pd.Series) -> SlaTally:
    counts = series.value_counts()
    return SlaTally(**{k: int(counts.get(k, 0)) for k in ("met", "missed", "pending", "no_target")})


def _empty_times() -> MeanTimes:
    return MeanTimes(overall=TimeStats(key="all", incidents=0, measured=0))


def _incidents(rows: RegisterRows, as_of: datetime) -> tuple[IncidentFigures, MeanTimes, MeanTimes, SlaFigures]:
    real_rows = [r for r in rows.incidents if not r.drill]
    drill_rows = [r for r in rows.incidents if r.drill]
    drills_by_type = _counts(pd.Series([r.emergency_type for r in drill_rows], dtype="object"))
    if not real_rows:
        return (IncidentFigures(drills=len(drill_rows), drills_by_type=drills_by_type), _empty_times(),
                _empty_times(), SlaFigures(ack=SlaTally(), resolve=SlaTally()))
    real = _frame(real_rows, list(IncidentRow.model_fields))
    real["level_key"] = real["level"].map(_level_key)
    opened = _ts(real["opened_at"])
    # Closed without passing through resolved: it was resolved when it was closed.
    done = _ts(real["resolved_at"]).fillna(_ts(real["closed_at"]))
    # A clock skew between machines must not make a time negative (as mtta_seconds does).
    real["mtta_minutes"] = ((_ts(real["acknowledged_at"]) - opened).dt.total_seconds() / 60).clip(lower=0)
    real["mttr_minutes"] = ((done - opened).dt.total_seconds() / 60).clip(lower=0)
    elapsed = (pd.Timestamp(as_of) - opened).dt.total_seconds() / 60
    real["ack_target"] = pd.to_numeric(real["ack_target_minutes"], errors="coerce")
    real["resolve_target"] = pd.to_numeric(real["resolve_target_hours"], errors="coerce") * 60
    real["sla_ack"] = [_sla_outcome(m, t, e) for m, t, e in zip(real["mtta_minutes"], real["ack_target"], elapsed)]
    real["sla_resolve"] = [_sla_outcome(m, t, e) for m, t, e in
                           zip(real["mttr_minutes"], real["resolve_target"], elapsed)]

    grouped = real.groupby(["emergency_type", "level_key"]).size().reset_index(name="n")
    figures = IncidentFigures(
        total=int(len(real)), drills=len(drill_rows), by_type=_counts(real["emergency_type"]),
        by_level=sorted(_counts(real["level_key"]), key=lambda c: c.key), by_status=_counts(real["status"]),
        by_type_and_level=[{"emergency_type": r.emergency_type, "level": r.level_key, "count": int(r.n)}
                           for r in grouped.itertuples()],
        drills_by_type=drills_by_type)
    misses = []
    for r in real.itertuples():
        for target, actual, goal in (("ack", r.mtta_minutes, r.ack_target), ("resolve", r.mttr_minutes, r.resolve_target)):
            if getattr(r, f"sla_{target}") == "missed":
                misses.append(SlaMiss(incident_id=r.id, emergency_type=r.emergency_type,
                                      level=None if pd.isna(r.level) else int(r.level), target=target,
                                      target_minutes=float(goal), actual_minutes=_round(actual)))
    sla = SlaFigures(
        ack=_tally(real["sla_ack"]), resolve=_tally(real["sla_resolve"]),
        by_level=[SlaLevel(level=k, ack=_tally(g["sla_ack"]), resolve=_tally(g["sla_resolve"]))
                  for k, g in sorted(real.groupby("level_key"), key=lambda kv: kv[0])],
        misses=misses)
    return figures, _mean_times(real, "mtta_minutes"), _mean_times(real, "mttr_minutes"), sla


def _obligations(rows: RegisterRows, as_of: datetime) -> ObligationFigures:
    real = [o for o in rows.obligations if not o.drill]
    out = ObligationFigures(total=len(real))
    if not real:
        return out
    df = _frame(real, list(ObligationRow.model_fields))
    deadline, met_at = _ts(df["deadline"]), _ts(df["met_at"])
    now = pd.Timestamp(as_of)
    outcome = pd.Series("open", index=df.index)
    outcome[df["status"] == "waived"] = "waived"
    outcome[df["status"] == "missed"] = "missed"
    outcome[(df["status"] == "open") & (deadline < now)] = "missed"
    met = df["status"] == "met"
    outcome[met & (met_at <= deadline)] = "met_on_time"
    outcome[met & (met_at > deadline)] = "met_late"
    counts = outcome.value_counts()
    for key in ("met_on_time", "met_late", "missed", "open", "waived"):
        setattr(out, key, int(counts.get(key, 0)))
    out.items = [ObligationItem(incident_id=r.incident_id, obligation_id=r.obligation_id,
                                emergency_type=r.emergency_type, law=r.law, deadline=r.deadline, met_at=r.met_at,
                                outcome=outcome[i]) for i, r in zip(df.index, real)]
    return out


def _drills(rows: RegisterRows) -> DrillFigures:
    out = DrillFigures(total=len(rows.drills), items=list(rows.drills))
    if not rows.drills:
        return out
    df = _frame(rows.drills, list(DrillRow.model_fields))
    scored = df[df["status"] == "scored"]
    out.live = int((df["mode"] == "live").sum())
    out.tabletop = int((df["mode"] == "tabletop").sum())
    out.scored = int(len(scored))
    out.passed = int((scored["passed"] == True).sum())  # noqa: E712 — a pandas mask, not a truth test
    out.not_passed = out.scored - out.passed
    out.broken = int((df["status"] == "failed").sum())
    scores = pd.to_numeric(scored["score"], errors="coerce").dropna()
    out.mean_score = _round(scores.mean()) if len(scores) else None
    return out


def _improvements(rows: RegisterRows, at: datetime) -> ImprovementFigures:
    out = ImprovementFigures(at=at)
    if not rows.improvements:
        return out
    df = _frame(rows.improvements, list(ImprovementRow.model_fields))
    moment = pd.Timestamp(at)
    closed = _ts(df["closed_at"])
    open_then = (_ts(df["opened_at"]) < moment) & (closed.isna() | (closed >= moment))
    overdue = open_then & (_ts(df["due_at"]) < moment)
    out.open = int(open_then.sum())
    out.overdue = int(overdue.sum())
    out.by_source = _counts(df.loc[open_then, "source"])
    out.overdue_items = [rows.improvements[i] for i in df.index[overdue]]
    return out


def _rate(sent: int, failed: int) -> float | None:
    return round(100.0 * sent / (sent + failed), 1) if sent + failed else None


def _delivery(rows: RegisterRows) -> tuple[list[ChannelDelivery], ChannelDelivery]:
    total = ChannelDelivery(channel="all")
    if not rows.notifications:
        return [], total
    df = _frame(rows.notifications, list(NotificationRow.model_fields))
    out = []
    for channel, g in df.groupby("channel", sort=True):
        counts = g["status"].value_counts()
        item = ChannelDelivery(channel=str(channel), total=int(len(g)), attempts=int(g["attempts"].sum()),
                               **{k: int(counts.get(k, 0)) for k in ("sent", "failed", "deferred", "pending")})
        item.delivery_rate = _rate(item.sent, item.failed)
        out.append(item)
    counts = df["status"].value_counts()
    total = ChannelDelivery(channel="all", total=int(len(df)), attempts=int(df["attempts"].sum()),
                            **{k: int(counts.get(k, 0)) for k in ("sent", "failed", "deferred", "pending")})
    total.delivery_rate = _rate(total.sent, total.failed)
    return out, total


def _runs(history: RunHistory, window: MonthWindow) -> RunFigures:
    start, end = as_utc(window.start), as_utc(window.end)
    runs = [r for r in history.runs if r.emergency_type
            and (r.expected_start_time is None or start <= as_utc(r.expected_start_time) < end)]
    real = [r for r in runs if not r.drill]
    out = RunFigures(total=len(real), drill_runs=len(runs) - len(real))
    bad = [BadRun(flow_run_id=r.id, name=r.name, flow_name=r.flow_name, state=r.state_name or r.state_type,
                  message=r.state_message, start_time=r.start_time, emergency_type=r.emergency_type,
                  drill=r.drill) for r in runs if r.state_type in BAD_STATES]
    out.bad_runs = [b for b in bad if not b.drill]
    out.drill_bad_runs = [b for b in bad if b.drill]
    if not real:
        return out
    df = pd.DataFrame([r.flat() for r in real])
    df["final"] = df["state_type"].where(df["state_type"].isin(FINAL_STATES), "IN_PROGRESS")
    out.by_state = _counts(df["final"])
    ended = df[df["final"] != "IN_PROGRESS"]
    out.median_seconds = _round(ended["run_seconds"].median()) if len(ended) else None
    out.mean_seconds = _round(ended["run_seconds"].mean()) if len(ended) else None
    for flow_name, g in df.groupby("flow_name", sort=True):
        counts = g["final"].value_counts()
        done = g[g["final"] != "IN_PROGRESS"]["run_seconds"]
        out.by_flow.append(FlowRunFigures(
            flow_name=str(flow_name) or "?", total=int(len(g)), completed=int(counts.get("COMPLETED", 0)),
            failed=int(counts.get("FAILED", 0)), crashed=int(counts.get("CRASHED", 0)),
            cancelled=int(counts.get("CANCELLED", 0)), in_progress=int(counts.get("IN_PROGRESS", 0)),
            median_seconds=_round(done.median()) if len(done) else None,
            mean_seconds=_round(done.mean()) if len(done) else None,
            max_seconds=_round(done.max()) if len(done) else None))
    return out


def compute_figures(*, rows: RegisterRows, history: RunHistory, as_of: datetime | None = None,
                    consistency: Any = None) -> MonthlyFigures:
    """Every figure of the month's report from the register's rows and Prefect's runs.

    ``as_of`` is the moment the report judges what is still pending (default: when the register
    was read, so every figure describes the same moment — the report's own emails, sent after,
    are next month's business); a past
    month's improvement items are judged at the month's end, the running month's at ``as_of``.
    ``consistency`` is the :class:`ConsistencyReport` of the month, included as it is."""
    window = rows.window
    as_of = as_utc(as_of or rows.read_at)
    incidents, mtta, mttr, sla = _incidents(rows, as_of)
    delivery, delivery_total = _delivery(rows)
    return MonthlyFigures(
        month=window.month, timezone=window.timezone, start=window.start, end=window.end, as_of=as_of,
        incidents=incidents, mtta=mtta, mttr=mttr, sla=sla, obligations=_obligations(rows, as_of),
        drills=_drills(rows), improvements=_improvements(rows, min(as_utc(window.end), as_of)),
        delivery=delivery, delivery_total=delivery_total, runs=_runs(history, window),
        consistency=_consistency(consistency))


def _consistency(report: Any) -> dict[str, Any] | None:
    if report is None:
        return None
    if isinstance(report, dict):
        return report
    data = report.model_dump(mode="json")
    data["ok"] = bool(report.ok)
    data["counts"] = report.counts()
    return data


def local_date(value: datetime, tz: str) -> date:
    return as_utc(value).astimezone(ZoneInfo(tz)).date()
