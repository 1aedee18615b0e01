"""Every deployment LedgerGuard runs, as data: one list for `serve` (embedded) and work pools.

Each spec names its flow, the deployment name, tags, the event trigger that starts it, its
schedules (in the agency's time zone) and default parameters. `serve_all()` serves the list from
one process (the embedded default); `deploy_all()` registers the SAME list on a work pool
(scale-out). One source, two ways to run.

Signals reach Prefect as events (see `ledgerguard.relay`):

    event     ledgerguard.signal.firing | .resolved | .change
    resource  ledgerguard.signal.<emergency_type>.<dedup key>
    payload   {"signal_id", "emergency_type", "request": <the flow's typed request JSON>}

A firing event starts the type's emergency flow with ``request`` hydrated from the payload as a
whole JSON object (Prefect validates it against the flow's pydantic model; an invalid payload
creates no run, only a WARNING and a ``prefect.automation.action.failed`` event). A resolved
event starts ``resolve-incident``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Interval

from flows import EMERGENCY_FLOWS
from flows.drill import drill, full_drill, monthly_drill, tabletop
from flows.monthly_report import monthly_report
from flows.notices import send_notice
from flows.consistency import consistency_check
from flows.people import approval_deadline, checklist, escalation, escalation_sweep
from flows.postmortem import postmortem, postmortem_sweep
from flows.readiness import readiness
from flows.sweeps import backup_sweep, deadline_sweep, ledger_sweep, probe_sweep, security_sweep
from flows.watchdog import page_duty_lead, resolve_incident
from ledgerguard.config import get_settings

FIRING = "ledgerguard.signal.firing"
RESOLVED = "ledgerguard.signal.resolved"
WATCHDOG_AUTOMATION = "ledgerguard-watchdog: page the duty lead on failed emergency runs"
WATCHDOG_DEPLOYMENT = "page-duty-lead"
READINESS_CRON = "30 8 * * 1"  # Monday 08:30 local: the report is in before the week's work starts
MONTHLY_REPORT_CRON = "0 9 1 * *"  # the 1st, 09:00 local: last month is complete and the office is in
POSTMORTEM_SWEEP_CRON = "30 18 * * *"  # end of the working day: the day's resolved incidents get theirs
CONSISTENCY_CRON = "0 7 * * *"  # before the office opens: yesterday's gaps are on the desk at 08:00

# The whole ``request`` object of the event payload, kept a JSON object (not a string): the
# inner Jinja renders it with ``tojson`` and the outer ``json`` kind parses it back, so the
# parameter arrives as a dict that Prefect validates against the flow's pydantic model.
REQUEST_FROM_EVENT: dict[str, Any] = {
    "__prefect_kind": "json",
    "value": {"__prefect_kind": "jinja", "template": "{{ event.payload.request | tojson }}"},
}


def agency_timezone() -> str:
    return get_settings().timezone or "Asia/Shanghai"


def signal_trigger(emergency_type: str) -> DeploymentEventTrigger:
    """Start the type's flow for every firing signal of that type."""
    return DeploymentEventTrigger(
        name=f"signal-firing-{emergency_type}",
        expect={FIRING},
        match={"prefect.resource.id": f"ledgerguard.signal.{emergency_type}.*"},
        parameters={"request": REQUEST_FROM_EVENT},
    )


def resolved_trigger() -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        name="signal-resolved",
        expect={RESOLVED},
        match={"prefect.resource.id": "ledgerguard.signal.*"},
        parameters={
            "emergency_type": "{{ event.resource['ledgerguard.emergency_type'] }}",
            "dedup_key": "{{ event.resource['ledgerguard.dedup_key'] }}",
            "signal_id": "{{ event.payload.signal_id }}",
        },
    )


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: the flow, how it is started (events, schedules), and its defaults."""

    name: str
    flow: Any
    entrypoint: str  # "<file>:<function>" relative to the project root, for work pools
    description: str
    tags: tuple[str, ...] = ()
    triggers: tuple[Any, ...] = ()
    schedules: tuple[Any, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    concurrency_limit: int | None = None

    def options(self) -> dict[str, Any]:
        active = get_settings().schedules_active
        options: dict[str, Any] = {
            "name": self.name, "description": self.description, "tags": list(self.tags),
            "triggers": list(self.triggers),
            "schedules": [s if active else dataclasses.replace(s, active=False) for s in self.schedules],
            "parameters": dict(self.parameters),
        }
        if self.concurrency_limit:
            options["concurrency_limit"] = self.concurrency_limit
        return options

    def to_deployment(self):
        """A `RunnerDeployment` for `prefect.serve` (the embedded default)."""
        return self.flow.to_deployment(**self.options())


def emergency_deployments() -> list[DeploymentSpec]:
    """One deployment per emergency type, named as its flow, started by that type's firing signals."""
    from ledgerguard.catalog.service import load_catalog

    catalog = load_catalog(get_settings().catalog_dir)
    specs = []
    for emergency_type, emergency_flow in sorted(EMERGENCY_FLOWS.items()):
        entry = catalog.get(emergency_type)
        summary = (emergency_flow.fn.__doc__ or "").strip().splitlines()[0]
        specs.append(DeploymentSpec(
            emergency_flow.name, emergency_flow, f"flows/{emergency_type}.py:{emergency_flow.fn.__name__}",
            f"{entry.name.zh} — {summary}", tags=(f"emergency:{emergency_type}",),
            triggers=(signal_trigger(emergency_type),)))
    return specs


def drill_deployments(tz: str) -> list[DeploymentSpec]:
    """Drills: on demand (typed form), the monthly rotating drill and the yearly full drill on the
    crons of catalog/drills.yaml, and the tabletop walk-through."""
    from ledgerguard.catalog.service import load_catalog

    policy = load_catalog(get_settings().catalog_dir).drills
    return [
        DeploymentSpec(
            "drill", drill, "flows/drill.py:drill",
            "应急演练 — break a sandbox copy of the agency the scenario's way, run the type's real flow on it "
            "in drill mode, score the response and send the evaluation", tags=("drill",)),
        DeploymentSpec(
            "monthly-drill", monthly_drill, "flows/drill.py:monthly_drill",
            "月度演练 — one emergency type a month, rotating through catalog/drills.yaml", tags=("drill",),
            schedules=(Cron(policy.monthly, timezone=tz, slug="monthly"),), concurrency_limit=1),
        DeploymentSpec(
            "full-drill", full_drill, "flows/drill.py:full_drill",
            "年度全面演练 — every emergency type, one after another, each on its own sandbox", tags=("drill",),
            schedules=(Cron(policy.yearly, timezone=tz, slug="yearly"),), concurrency_limit=1),
        DeploymentSpec(
            "tabletop", tabletop, "flows/drill.py:tabletop",
            "桌面推演 — walk a type's runbook with the team; the run asks each step through the UI's forms",
            tags=("drill",)),
    ]


def build_deployments(timezone: str | None = None) -> list[DeploymentSpec]:
    tz = timezone or agency_timezone()
    # Interval schedules are anchored at local midnight so "every 10 minutes" lands on :00, :10…
    midnight = datetime(2025, 1, 1, tzinfo=ZoneInfo(tz))
    return [
        *emergency_deployments(),
        DeploymentSpec(
            "ledger-sweep", ledger_sweep, "flows/sweeps.py:ledger_sweep",
            "账套巡检 — run the ledger detectors over every client's ledger; findings become signals",
            tags=("sweep", "sweep:ledger"),
            # Every 15 minutes in office hours (08:00–20:59, Mon–Sat), hourly at night and on Sundays.
            schedules=(Cron("*/15 8-20 * * 1-6", timezone=tz, slug="office-hours"),
                       Cron("0 0-7,21-23 * * 1-6", timezone=tz, slug="night"),
                       Cron("0 * * * 0", timezone=tz, slug="sunday")),
            concurrency_limit=1),
        DeploymentSpec(
            "backup-sweep", backup_sweep, "flows/sweeps.py:backup_sweep",
            "备份巡检 — check the backup sets against the RPO every 10 minutes; findings become signals",
            tags=("sweep", "sweep:backup"),
            schedules=(Interval(timedelta(minutes=10), anchor_date=midnight, timezone=tz, slug="every-10-min"),),
            concurrency_limit=1),
        DeploymentSpec(
            "probe-sweep", probe_sweep, "flows/sweeps.py:probe_sweep",
            "探测巡检 — probe the e-tax portals and the bookkeeping SaaS every 5 minutes; outages become signals",
            tags=("sweep", "sweep:probe"),
            schedules=(Interval(timedelta(minutes=5), anchor_date=midnight, timezone=tz, slug="every-5-min"),),
            concurrency_limit=1),
        DeploymentSpec(
            "deadline-sweep", deadline_sweep, "flows/sweeps.py:deadline_sweep",
            "期限巡检 — unfiled returns, annual items, certificates and tax debits against their deadlines, hourly",
            tags=("sweep", "sweep:deadline"),
            # Hourly in office hours (Mon–Sat: 调休 Saturdays are working days), once at night.
            schedules=(Cron("5 8-20 * * 1-6", timezone=tz, slug="office-hours"),
                       Cron("5 2 * * *", timezone=tz, slug="nightly")),
            concurrency_limit=1),
        DeploymentSpec(
            "security-sweep", security_sweep, "flows/sweeps.py:security_sweep",
            "安全巡检 — file shares, staff exports and logins, office alarms, every 10 minutes",
            tags=("sweep", "sweep:security"),
            schedules=(Interval(timedelta(minutes=10), anchor_date=midnight + timedelta(minutes=2), timezone=tz,
                                slug="every-10-min"),),
            concurrency_limit=1),
        DeploymentSpec(
            "resolve-incident", resolve_incident, "flows/watchdog.py:resolve_incident",
            "事件恢复 — a resolve from monitoring: note it on the incident's timeline and send the report",
            tags=("lifecycle",), triggers=(resolved_trigger(),)),
        DeploymentSpec(
            "escalation", escalation, "flows/people.py:escalation",
            "升级 — one round of an incident's escalation chain: notify, then hold the acknowledgement form "
            "until the next round (started by the emergency runs, each round scheduled by the one before)",
            tags=("people",)),
        DeploymentSpec(
            "checklist", checklist, "flows/people.py:checklist",
            "人工步骤清单 — an incident's open manual steps as a form to tick (started by the emergency runs)",
            tags=("people",)),
        DeploymentSpec(
            "approval-deadline", approval_deadline, "flows/people.py:approval_deadline",
            "审批期限 — the end of an approval's wait: wake the suspended emergency run, which records the "
            "time-out, pages the duty lead and goes on as the catalog says",
            tags=("people",)),
        DeploymentSpec(
            "escalation-sweep", escalation_sweep, "flows/people.py:escalation_sweep",
            "升级巡检 — every 5 minutes: open incidents whose escalation never started (opened by a run "
            "outside the served stack) get it now, with the notifications quiet hours held back",
            tags=("sweep", "people"),
            schedules=(Interval(timedelta(minutes=5), anchor_date=midnight + timedelta(minutes=1), timezone=tz,
                                slug="every-5-min"),),
            concurrency_limit=1),
        DeploymentSpec(
            "send-notice", send_notice, "flows/notices.py:send_notice",
            "对外通知审批 — a person approves and sends (or rejects) one notice draft: PIPL Art. 57, a client, "
            "the CAC or police report; authorities' notices are recorded as to be filed by hand",
            tags=("people", "notices")),
        *drill_deployments(tz),
        DeploymentSpec(
            "readiness", readiness, "flows/readiness.py:readiness",
            "准备度周检 — every Monday 08:30: check the readiness registers (supplies, contacts, regulations, "
            "drills, RACI, check-ins, on-call load), raise an improvement item per gap, email the week's report",
            tags=("readiness",), schedules=(Cron(READINESS_CRON, timezone=tz, slug="weekly"),), concurrency_limit=1),
        DeploymentSpec(
            "monthly-report", monthly_report, "flows/monthly_report.py:monthly_report",
            "月度合规报告 — the 1st at 09:00: last month's MTTA/MTTR by type and level, SLA and obligation "
            "deadlines met or missed, drill scores, open improvement items, delivery rates per channel and "
            "Prefect's emergency runs, with charts, emailed to management once per month",
            tags=("compliance", "report"), schedules=(Cron(MONTHLY_REPORT_CRON, timezone=tz, slug="monthly"),),
            concurrency_limit=1),
        DeploymentSpec(
            "postmortem", postmortem, "flows/postmortem.py:postmortem",
            "事件复盘 — an incident's post-mortem from Prefect's runs and the register (zh-CN and en); "
            "the form takes the root cause and action items a person concluded",
            tags=("compliance",)),
        DeploymentSpec(
            "postmortem-sweep", postmortem_sweep, "flows/postmortem.py:postmortem_sweep",
            "复盘巡检 — every evening: post-mortems of the incidents resolved or closed in the last 7 days "
            "(sent once per state and review revision)",
            tags=("compliance", "sweep"), schedules=(Cron(POSTMORTEM_SWEEP_CRON, timezone=tz, slug="daily"),),
            concurrency_limit=1),
        DeploymentSpec(
            "consistency-check", consistency_check, "flows/consistency.py:consistency_check",
            "一致性检查 — every morning: the register against Prefect's run history (incidents without runs, "
            "runs Prefect lost, emergency runs that left no record); problems go to management",
            tags=("compliance",), schedules=(Cron(CONSISTENCY_CRON, timezone=tz, slug="daily"),),
            concurrency_limit=1),
        DeploymentSpec(
            WATCHDOG_DEPLOYMENT, page_duty_lead, "flows/watchdog.py:page_duty_lead",
            "值班负责人告警 — an emergency run failed or crashed: page the duty lead, keep the incident open",
            tags=("watchdog",)),
    ]


DEPLOYMENTS: list[DeploymentSpec] = build_deployments()


def spec(name: str) -> DeploymentSpec:
    return next(s for s in DEPLOYMENTS if s.name == name)


# --- the watchdog automation -------------------------------------------------------------------


def watchdog_automation(deployment_id) -> Any:
    """Failed or Crashed runs tagged ``emergency:*`` → run `page-duty-lead` with the run's id."""
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=WATCHDOG_AUTOMATION,
        description="An emergency flow run entered Failed or Crashed: page the duty lead (LedgerGuard).",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": "prefect.tag.emergency:*", "prefect.resource.role": "tag"},
            posture=Posture.Reactive, threshold=1, within=timedelta(0),
        ),
        actions=[RunDeployment(
            source="selected", deployment_id=deployment_id,
            parameters={"flow_run_id": "{{ event.resource.id | replace('prefect.flow-run.', '') }}",
                        "state": "{{ event.event | replace('prefect.flow-run.', '') }}"},
        )],
    )


def ensure_watchdog_automation(deployment_id) -> Any:
    """Create the watchdog automation, or bring the one with its name up to date (idempotent)."""
    from prefect.automations import Automation

    wanted = watchdog_automation(deployment_id)
    try:
        existing = Automation.read(name=WATCHDOG_AUTOMATION)
    except ValueError:
        return wanted.create()
    wanted.id = existing.id
    wanted.update()
    return wanted


# --- two ways to run the same list -------------------------------------------------------------


def serve_all(*, limit: int | None = None) -> None:
    """Serve every deployment from this process (the embedded default); blocks until stopped.

    The watchdog deployment is registered first so its automation can name it; `serve` then
    re-applies it under the same name and id.
    """
    from prefect import serve

    deployments = [s.to_deployment() for s in DEPLOYMENTS]
    watchdog = next(d for d, s in zip(deployments, DEPLOYMENTS) if s.name == WATCHDOG_DEPLOYMENT)
    ensure_watchdog_automation(watchdog.apply())
    serve(*deployments, limit=limit, print_starting_message=False)


def deploy_all(*, work_pool: str, source: str, image: str | None = None) -> list[str]:
    """Register every deployment on a work pool from ``source`` (a git URL or a folder).

    Returns the deployment ids. Workers of the pool pull ``source`` and run the entrypoints.
    """
    from prefect import Flow

    ids = []
    watchdog_id = None
    for item in DEPLOYMENTS:
        remote = Flow.from_source(source=source, entrypoint=item.entrypoint)
        options = item.options()
        kwargs: dict[str, Any] = {"work_pool_name": work_pool, "print_next_steps": False}
        if image:
            kwargs["image"] = image
        else:
            kwargs["build"] = False
            kwargs["push"] = False
        deployment_id = remote.deploy(**options, **kwargs)
        ids.append(str(deployment_id))
        if item.name == WATCHDOG_DEPLOYMENT:
            watchdog_id = deployment_id
    if watchdog_id is not None:
        ensure_watchdog_automation(watchdog_id)
    return ids
