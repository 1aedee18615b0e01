"""`ledgerguard` — the command line: demo, checks, sample data, runs, audit.

This is an entry point: it may import anything. Prefect is imported only by the commands that
run flows, after the environment points it at the right server.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ledgerguard.config import get_settings, reset_settings

app = typer.Typer(help="LedgerGuard: emergency response for accounting agencies (代理记账公司).",
                  no_args_is_help=True, add_completion=False)
audit_app = typer.Typer(help="Check the register's tamper-evident timeline.", no_args_is_help=True)
run_app = typer.Typer(help="Run an emergency flow now (against the Prefect server in PREFECT_API_URL).",
                      no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(run_app, name="run")
console = Console()
err = Console(stderr=True)


def _use_home(home: Optional[Path]) -> None:
    if home is not None:
        os.environ["LEDGERGUARD_HOME"] = str(home.resolve())
    reset_settings()
    from ledgerguard.runtime import reset_runtime

    reset_runtime()


def _install_masking() -> None:
    from ledgerguard.masking import install_log_masking

    install_log_masking()


@app.command()
def check(catalog: Optional[Path] = typer.Option(None, "--catalog", help="Catalog folder (default: the bundled catalog/)")) -> None:
    """Validate every catalog file; print each problem as file: field: reason."""
    from ledgerguard.catalog.service import check_catalog

    directory = catalog or get_settings().catalog_dir
    problems = check_catalog(directory)
    if problems:
        for problem in problems:
            err.print(f"[red]{problem.file}[/red]: {problem.field}: {problem.reason}", highlight=False)
        err.print(f"{len(problems)} problem(s) in {directory}")
        raise typer.Exit(1)
    from ledgerguard.notices.service import NOTICES_FILE, check_policy

    # The notices file (catalog/notices/notices.yaml) is checked against the catalog it sits in.
    from ledgerguard.catalog.service import load_catalog

    notices_file = Path(directory) / NOTICES_FILE
    notice_problems = check_policy(notices_file, catalog=load_catalog(directory),
                                   templates_dir=get_settings().templates_dir)
    if notice_problems:
        for where, reason in notice_problems:
            err.print(f"[red]{NOTICES_FILE.as_posix()}[/red]: {where or '(file)'}: {reason}", highlight=False)
        err.print(f"{len(notice_problems)} problem(s) in {notices_file}")
        raise typer.Exit(1)
    files = sorted(p.name for p in Path(directory).glob("*.yaml"))
    console.print(f"catalog OK: {len(files)} file(s) in {directory}")


@audit_app.command("verify")
def audit_verify(home: Optional[Path] = typer.Option(None, help="LedgerGuard home folder"),
                 register_url: Optional[str] = typer.Option(None, "--register", help="SQLAlchemy URL of the register")) -> None:
    """Recompute the timeline hash chain; name every edited or deleted entry."""
    _use_home(home)
    from ledgerguard.register.audit import verify_chain
    from ledgerguard.register.db import make_engine, session_scope, upgrade

    engine = make_engine(register_url or get_settings().register)
    upgrade(engine)
    with session_scope(engine) as db_session:
        problems = verify_chain(db_session=db_session)
        from sqlalchemy import func, select

        from ledgerguard.register.models import TimelineEntry, TimelineTombstone

        count = db_session.scalar(select(func.count()).select_from(TimelineEntry))
        purged = db_session.scalar(select(func.count()).select_from(TimelineTombstone))
    if problems:
        for problem in problems:
            err.print(f"[red]TAMPERED[/red] {problem}", highlight=False)
        raise typer.Exit(1)
    console.print(f"timeline intact: {count} entries verified"
                  + (f", {purged} purged entries as tombstones" if purged else ""))


@app.command()
def sample(out: Optional[Path] = typer.Option(None, help="Agency folder (default: <home>/agency)"),
           clients: int = typer.Option(200, min=1, max=5000), nights: int = typer.Option(3, min=1, max=30),
           seed: int = typer.Option(7), force: bool = typer.Option(False, help="Replace an existing folder"),
           scenario: Optional[str] = typer.Option(
               None, help="Plant a worked scenario of shared/domain/scenarios.md (A–F) in an agency of its "
                          "size, as of its moment")) -> None:
    """Generate a realistic sample agency: clients, ledgers, nightly backups, contacts, filing tracker."""
    import shutil

    from ledgerguard.sample.generator import generate_agency

    target = out or get_settings().agency_path
    if target.exists() and any(target.iterdir()):
        if not force:
            err.print(f"{target} already exists; use --force to replace it")
            raise typer.Exit(1)
        shutil.rmtree(target)
    if scenario:
        from ledgerguard.sample.scenarios import SCENARIOS, plant_scenario

        if scenario.upper() not in SCENARIOS:
            err.print(f"unknown scenario {scenario!r}; one of: "
                      + "; ".join(f"{s.id} {s.title}" for s in SCENARIOS.values()))
            raise typer.Exit(2)
        planted = plant_scenario(scenario, target, seed=seed)
        console.print(f"scenario {planted.scenario} planted in {target} as of {planted.as_of.isoformat()}: "
                      f"{planted.planted}", highlight=False, soft_wrap=True)
        console.print(f"expected level {planted.expected_level}; run it with:\n  {planted.cli}",
                      highlight=False, soft_wrap=True)
        return
    agency = generate_agency(target, clients=clients, nights=nights, seed=seed)
    console.print(f"sample agency '{agency.config.name}' with {len(agency.clients)} clients in {target}")


@app.command("smtp-sink")
def smtp_sink(directory: Optional[Path] = typer.Option(None, help="Where .eml files go (default: <home>/mail)"),
              host: str = "127.0.0.1", port: int = 8025) -> None:
    """Run a local SMTP server that writes every message it receives as an .eml file."""
    from ledgerguard.channels.smtp_sink import run_sink_forever

    target = directory or get_settings().mail_dir
    console.print(f"SMTP sink on {host}:{port} → {target} (Ctrl-C to stop)")
    run_sink_forever(target, host, port)


def _print_outcome(outcome) -> None:
    table = Table(title="LedgerGuard run", show_header=False)
    table.add_row("type / resource", f"{outcome.emergency_type} / {outcome.resource}")
    table.add_row("incident", f"{outcome.incident_id or '—'} ({'opened' if outcome.incident_created else 'existing' if outcome.incident_id else 'none'})")
    table.add_row("status", outcome.status)
    if outcome.level:
        table.add_row("level", f"{outcome.level_label} ({outcome.priority}), regulatory grade {outcome.regulatory_grade}")
        table.add_row("why", "\n".join(outcome.rationale) or "—")
    if outcome.clear_reasons:
        table.add_row("quiet detectors", "\n".join(outcome.clear_reasons))
    table.add_row("notified", "\n".join(outcome.notified) or "—")
    if outcome.notifications_failed:
        table.add_row("not delivered", "\n".join(outcome.notifications_failed))
    table.add_row("runbook", "\n".join(f"{s.step_id}: {s.status} — {s.summary}" for s in outcome.steps) or "—")
    table.add_row("obligations", "\n".join(outcome.obligations) or "—")
    table.add_row("report", outcome.report_path or "—")
    table.add_row("post-mortem", outcome.postmortem_path or "—")
    console.print(table)


def _run_flow(flow_name: str, request) -> object:
    from flows import EMERGENCY_FLOWS

    return EMERGENCY_FLOWS[flow_name](request)


@run_app.command("ledger-loss")
def run_ledger_loss(client: str = typer.Option(..., "--client", help="Client ID, e.g. C0001"),
                    remediate: bool = True, home: Optional[Path] = None) -> None:
    """Check one client's ledger and restore it if it was lost or corrupted."""
    _use_home(home)
    _install_masking()
    from ledgerguard.response.models import LedgerLossRequest

    _print_outcome(_run_flow("ledger_loss", LedgerLossRequest(client_id=client, remediate=remediate,
                                                              requested_by=os.environ.get("USER", "cli"), source="cli")))


@run_app.command("backup-failure")
def run_backup_failure(target: str = typer.Option("nightly", "--target"), remediate: bool = True,
                       home: Optional[Path] = None) -> None:
    """Check the nightly backups against the RPO and repair them."""
    _use_home(home)
    _install_masking()
    from ledgerguard.response.models import BackupFailureRequest

    _print_outcome(_run_flow("backup_failure", BackupFailureRequest(backup_target=target, remediate=remediate,
                                                                    requested_by=os.environ.get("USER", "cli"), source="cli")))


@run_app.command("emergency")
def run_emergency(emergency_type: str = typer.Argument(..., help="Catalog id, e.g. etax_outage, urgent_claim"),
                  value: Optional[str] = typer.Argument(None, help="The type's subject: portal, share, client "
                                                                   "id, period, year, claim request id…"),
                  remediate: bool = True, drill: bool = False,
                  as_of: Optional[datetime] = typer.Option(
                      None, "--as-of", formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S"],
                      help="Judge the data as of this time (ISO 8601; replay a past event or a scenario)"),
                  home: Optional[Path] = None) -> None:
    """Run any other emergency type's flow, e.g. `run emergency urgent_claim R20260629-01`."""
    _use_home(home)
    _install_masking()
    from pydantic import ValidationError

    from ledgerguard.response.models import TYPED_REQUESTS

    model = TYPED_REQUESTS.get(emergency_type)
    if model is None:
        console.print(f"[red]unknown emergency type {emergency_type!r}[/]; one of: "
                      f"{', '.join(sorted(TYPED_REQUESTS))} (ledger_loss and backup_failure have their own commands)")
        raise typer.Exit(2)
    try:
        request = model(**({model.resource_field: value} if value is not None else {}), remediate=remediate,
                        drill=drill, requested_by=os.environ.get("USER", "cli"), source="cli", observed_at=as_of)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        console.print(f"[red]{emergency_type}: {reasons}[/]")
        raise typer.Exit(2) from None
    _print_outcome(_run_flow(emergency_type, request))


@app.command()
def incidents(home: Optional[Path] = None, all_: bool = typer.Option(False, "--all", help="Include resolved and closed"),
              with_drills: bool = typer.Option(False, "--drills", help="Include drill incidents (kept apart by default)")) -> None:
    """List incidents in the register (real ones; drill incidents with --drills, marked 【演练】)."""
    _use_home(home)
    from rich.markup import escape

    from ledgerguard.acknowledgement.service import mtta_seconds
    from ledgerguard.register import service as register
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    from rich.table import Column

    table = Table(Column("id", overflow="fold"), "type", "resource", "level", "status", "opened", "acknowledged by",
                  "MTTA (min)")
    with runtime.session() as db_session:
        for incident in register.list_incidents(db_session=db_session, drill=None if with_drills else False):
            if not all_ and incident.status in ("resolved", "closed"):
                continue
            seconds = mtta_seconds(incident)
            by = (f"{incident.acknowledged_by} ({incident.acknowledged_via})" if incident.acknowledged_via
                  else incident.acknowledged_by) if incident.acknowledged_by else "—"
            table.add_row(incident.id, ("【演练】" if incident.drill else "") + incident.emergency_type,
                          escape(incident.resource),
                          str(incident.level or "—"), incident.status, str(incident.opened_at), escape(by),
                          f"{seconds / 60:.1f}" if seconds is not None else "—")
    console.print(table)


class _AckRefused(Exception):
    """`ledgerguard ack` cannot acknowledge: the message says why (exit 1)."""


MIN_ID_PREFIX = 6


def _find_incident(db_session, ref: str, t=lambda zh, english: english):
    """The incident whose id is ``ref``, or the only one whose id starts with it (>= 6 chars)."""
    from sqlalchemy import select

    from ledgerguard.register.models import Incident

    ref = ref.strip()
    incident = db_session.get(Incident, ref) if ref else None
    if incident is not None:
        return incident
    if len(ref) < MIN_ID_PREFIX:
        raise _AckRefused(t(f"登记簿中没有事件 {ref!r}（编号前缀至少 {MIN_ID_PREFIX} 个字符）",
                            f"incident {ref!r} not found in the register (a prefix needs at least "
                            f"{MIN_ID_PREFIX} characters)"))
    found = list(db_session.scalars(select(Incident).where(Incident.id.startswith(ref, autoescape=True))
                                    .order_by(Incident.opened_at.desc()).limit(6)))
    if not found:
        raise _AckRefused(t(f"登记簿中没有事件 {ref!r}", f"incident {ref!r} not found in the register"))
    if len(found) > 1:
        listed = ", ".join(f"{i.id} ({i.emergency_type}, {i.status})" for i in found[:5]) + (" …" if len(found) > 5 else "")
        raise _AckRefused(t(f"编号前缀 {ref!r} 对应多个事件：{listed}", f"incident prefix {ref!r} is ambiguous: {listed}"))
    return found[0]


def _escalation_api(home: Path) -> Optional[str]:
    """Prefect's API for stopping the escalation: PREFECT_API_URL, `ledgerguard up`'s server on
    this home (stack.json), or `ledgerguard ui` on its default port when this home has run one."""
    from ledgerguard.embedded import server_is_healthy
    from ledgerguard.intake.app import prefect_api_url

    url = prefect_api_url(home)
    if url is None and (home / "prefect").is_dir() and server_is_healthy("http://127.0.0.1:4200/api", timeout=1):
        url = "http://127.0.0.1:4200/api"
    return url


@app.command()
def ack(incident: str = typer.Argument(..., help="Incident id (or a unique prefix of at least 6 characters)"),
        by: str = typer.Option(..., "--by", help="Your person id in contacts.yaml"),
        note: str = typer.Option("", "--note", help="A note for the timeline"),
        home: Optional[Path] = typer.Option(None, "--home", help="LedgerGuard home folder")) -> None:
    """Acknowledge (take over) an incident: the timeline records who, how and when; escalation stops."""
    _use_home(home)
    from rich.markup import escape

    from ledgerguard.acknowledgement.service import UnknownPerson, acknowledge, check_person, mtta_seconds
    from ledgerguard.channels.contacts import ContactsError
    from ledgerguard.channels.messaging import format_dt
    from ledgerguard.runtime import get_runtime

    settings = get_settings()
    en = settings.language == "en"
    t = (lambda zh, english: english if en else zh)
    runtime = get_runtime()
    try:
        person_id = check_person(contacts=runtime.contacts, person_id=by)
        with runtime.session() as db_session:
            found = _find_incident(db_session, incident, t)

            def refuse_closed() -> None:
                if not found.is_open:
                    raise _AckRefused(t(f"事件 {found.id} 已{'恢复' if found.status == 'resolved' else '关闭'}"
                                        f"（{found.status}），不能再确认接手",
                                        f"incident {found.id} is {found.status}: it cannot be acknowledged any more"))

            refuse_closed()
            result = acknowledge(db_session=db_session, incident_id=found.id, by=person_id, via="cli", note=note)
            refuse_closed()  # again under the row lock acknowledge took (resolved meanwhile: rolled back)
            seconds = mtta_seconds(found)
            title = found.title or found.emergency_type
    except UnknownPerson as exc:
        err.print(t(f"未知的确认人：{exc}", str(exc)), style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1) from None
    except (ContactsError, _AckRefused) as exc:
        err.print(str(exc), style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1) from None

    tz = settings.timezone
    table = Table(show_header=False, title=t("已确认接手", "Acknowledged") if result.first
                  else t("此前已确认接手（本次已记入时间线）", "Already acknowledged (this one is on the timeline too)"))
    table.add_row(t("事件", "incident"), escape(f"{result.incident_id} — {title}"))
    table.add_row(t("确认人", "acknowledged by"), escape(f"{result.acknowledged_by} ({result.acknowledged_via})"))
    table.add_row(t("确认时间", "at"), format_dt(result.acknowledged_at, tz=tz))
    table.add_row("MTTA", t(f"{seconds / 60:.1f} 分钟", f"{seconds / 60:.1f} min") if seconds is not None else "—")
    table.add_row(t("状态", "status"), result.status)
    console.print(table)

    from ledgerguard.intake.app import stop_escalation_best_effort

    api = _escalation_api(settings.home)
    outcome = stop_escalation_best_effort(incident_id=result.incident_id, api_url=api,
                                          message=f"acknowledged by {person_id} via cli")
    if outcome.stopped:
        console.print(t(f"升级已停止：结束了 {len(outcome.ended)} 个等待中的升级运行",
                        f"escalation stopped: {len(outcome.ended)} waiting escalation run(s) ended"), highlight=False)
    else:
        console.print(t(f"升级将在下一轮自行停止（{outcome.reason}）",
                        f"escalation will stop at its next round ({outcome.reason})"),
                      highlight=False, soft_wrap=True, markup=False)


@app.command()
def oncall(at: Optional[str] = typer.Option(None, "--at", help="ISO 8601 moment to look at (default: now); "
                                                                "without an offset it is the agency's local time"),
           days: int = typer.Option(0, "--days", min=0, max=62, help="Also list every shift of the next N days"),
           home: Optional[Path] = typer.Option(None, "--home", help="LedgerGuard home folder")) -> None:
    """Who is on call now and next, per role; the quiet hours and whether now is inside them."""
    _use_home(home)
    from datetime import timezone

    from ledgerguard.agency import load_agency
    from ledgerguard.agency.models import AgencyDataError
    from ledgerguard.masking import mask_text
    from ledgerguard.models import Level
    from ledgerguard.oncall import service as roster_service

    language = get_settings().language
    en = language == "en"
    t = (lambda zh, english: english if en else zh)
    try:
        agency = load_agency(get_settings().agency_path)
        roster = roster_service.load_roster(agency=agency)
    except AgencyDataError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    tz = roster_service.roster_tz(roster)
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            err.print(t(f"--at: 无法识别的时间 {at!r}（ISO 8601，例如 2026-10-09T23:00+08:00）",
                        f"--at: {at!r} is not an ISO 8601 moment (e.g. 2026-10-09T23:00+08:00)"), highlight=False)
            raise typer.Exit(2) from None
    else:
        moment = datetime.now(timezone.utc)
    now = moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(tz)

    def who(person) -> str:
        return mask_text(f"{person.name} ({person.id})" + (f" {person.phone}" if person.phone else ""))

    def stamp(moment_: datetime) -> str:
        return moment_.astimezone(tz).strftime("%Y-%m-%d %H:%M")

    table = Table(t("角色", "role"), t("当前值班", "on call now"), t("交接时间", "hand-over"),
                  t("下一位", "next"), t("备注", "note"),
                  title=t(f"值班表 {stamp(now)}（{tz.key}）", f"On call at {stamp(now)} ({tz.key})"))
    for role in roster.rotations:
        shift = roster_service.shift_at(roster=roster, role=role, at=now)
        current = roster_service.on_call(roster=roster, contacts=agency.contacts, role=role, at=now)
        handover = roster_service.next_handover(roster=roster, role=role, at=now)
        following = roster_service.on_call(roster=roster, contacts=agency.contacts, role=role, at=handover)
        note = (t(f"临时替班：{shift.override_reason}", f"override: {shift.override_reason}")
                if shift.is_override else "")
        table.add_row(role, who(current), stamp(handover), who(following), mask_text(note))
    console.print(table)

    quiet = roster.quiet_hours
    waiting = "、".join(Level(v).label(language) for v in quiet.levels) if not en else \
        ", ".join(Level(v).label(language) for v in quiet.levels)
    inside = roster_service.is_quiet(roster=roster, at=now)
    working = roster_service.is_working_day(now.date())
    console.print(t(f"静默时段 {quiet.hours}（{waiting or '无'}等待；一级/二级始终立即发送）"
                    + ("；非工作日全天静默" if quiet.non_working_days else ""),
                    f"Quiet hours {quiet.hours} ({waiting or 'nothing'} waits; levels 1/2 always go out at once)"
                    + ("; non-working days are quiet all day" if quiet.non_working_days else "")),
                  highlight=False, soft_wrap=True)
    day_kind = t("工作日" if working else "非工作日", "a working day" if working else "a non-working day")
    if inside:
        release = stamp(roster_service.delivery_time(roster=roster, level=max(quiet.levels or [4]), at=now))
        console.print(t(f"现在在静默时段内（今天是{day_kind}）；{waiting or '四级'}通知将于 {release} 发送",
                        f"Now is inside quiet hours (today is {day_kind}); {waiting or 'level 4'} "
                        f"notifications go out at {release}"), highlight=False, soft_wrap=True)
    else:
        console.print(t(f"现在不在静默时段内（今天是{day_kind}）；所有级别立即发送",
                        f"Now is outside quiet hours (today is {day_kind}); every level goes out at once"),
                      highlight=False, soft_wrap=True)

    if days:
        plan = Table(t("角色", "role"), t("开始", "from"), t("结束", "until"), t("值班人", "on call"),
                     t("备注", "note"), title=t(f"未来 {days} 天排班", f"Shifts of the next {days} day(s)"))
        for shift in roster_service.schedule(roster=roster, contacts=agency.contacts, start=now, days=days):
            plan.add_row(shift.role, stamp(shift.starts), stamp(shift.ends), who(shift.person),
                         mask_text(shift.override_reason or ""))
        console.print(plan)


# --- drills and improvement items (issue 6) ------------------------------------------------------


def _drill_type(name: str, catalog) -> str:
    """A catalog id (ledger_loss) or its flow name (ledger-loss)."""
    if name in catalog:
        return name
    try:
        return catalog.by_flow(name).id
    except KeyError:
        console.print(f"[red]unknown emergency type {name!r}[/]; one of: {', '.join(sorted(catalog.entries))}")
        raise typer.Exit(2) from None


def _print_scorecard(outcome, language: str) -> None:
    from rich.markup import escape

    from tasks.drill import MEASURE_LABELS

    labels = MEASURE_LABELS.get(language, MEASURE_LABELS["en"])
    zh = language == "zh-CN"
    table = Table("measure" if not zh else "指标", "value" if not zh else "结果", "detail" if not zh else "说明",
                  title=(f"演练 {outcome.drill_id}：{outcome.emergency_type}/{outcome.scenario}" if zh
                         else f"Drill {outcome.drill_id}: {outcome.emergency_type}/{outcome.scenario}"))
    for name, m in outcome.measures.items():
        value = "—" if m.get("value") is None else f"{m['value'] * 100:.0f}%"
        table.add_row(labels.get(name, name), value, escape(str(m.get("detail") or "")))
    console.print(table)
    verdict = ("通过" if outcome.passed else "未通过") if zh else ("passed" if outcome.passed else "not passed")
    console.print(f"score {outcome.score:.1f} / 100 (pass mark {outcome.pass_mark:g}): {verdict}", highlight=False)
    console.print(f"level {outcome.level or '—'} (expected {outcome.expected_level}); incident "
                  f"{outcome.incident_id or '—'}; production untouched: {outcome.production_untouched}",
                  highlight=False)
    for item in outcome.improvements:
        console.print(f"improvement {item['id']}: {escape(item['title'])} (owner {item['owner']}, "
                      f"due {item['due_at'][:10]})", highlight=False, soft_wrap=True)
    if outcome.error:
        console.print(f"[red]{escape(outcome.error)}[/]", soft_wrap=True)
    console.print(f"report: {outcome.report_path or '—'}", soft_wrap=True, highlight=False)


@app.command()
def drill(name: str = typer.Argument(..., help="Emergency type to drill: catalog id or flow name, e.g. ledger-loss"),
          scenario: Optional[str] = typer.Option(None, "--scenario", help="Scenario id (default: the type's first "
                                                 "scenario with a drill: block)"),
          people: bool = typer.Option(False, "--people", help="Wait for real people to acknowledge and approve "
                                      "(default: a stand-in answers, for an unattended drill)"),
          as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON"),
          home: Optional[Path] = None) -> None:
    """Run a drill now: the type's real flow on a sandbox copy of the agency; prints the scorecard.
    Exit 0 when the drill passed, 1 when it did not, 2 when it could not run."""
    _use_home(home)
    _install_masking()
    from ledgerguard.drills.models import DrillRequest
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    emergency_type = _drill_type(name, runtime.catalog)
    entry = runtime.catalog.get(emergency_type)
    if scenario and not any(s.id == scenario and s.drill for s in entry.scenarios):
        console.print(f"[red]{emergency_type}: no drillable scenario {scenario!r}[/]; drillable: "
                      + ", ".join(s.id for s in entry.scenarios if s.drill))
        raise typer.Exit(2)
    from flows import drill as drill_flow

    state = drill_flow(DrillRequest(emergency_type=emergency_type, scenario=scenario, stand_in=not people,
                                    requested_by=os.environ.get("USER", "cli")), return_state=True)
    if not state.is_completed():
        console.print(f"[red]the drill could not run: {state.type.value} {state.message or ''}[/]", soft_wrap=True)
        raise typer.Exit(2)
    outcome = state.result()
    if as_json:
        print(outcome.model_dump_json(indent=2))
    else:
        _print_scorecard(outcome, runtime.settings.language)
    raise typer.Exit(0 if outcome.passed else 1)


@app.command()
def drills(home: Optional[Path] = None, as_json: bool = typer.Option(False, "--json")) -> None:
    """Past drills with their scores (newest first)."""
    _use_home(home)
    from ledgerguard.drills import service as drill_service
    from ledgerguard.runtime import get_runtime

    with get_runtime().session(read_only=True) as db_session:
        rows = [{"id": d.id, "type": d.emergency_type, "scenario": d.scenario_id, "mode": d.mode, "status": d.status,
                 "started_at": d.started_at.isoformat(timespec="seconds"), "score": d.score, "passed": d.passed,
                 "level": d.level, "expected_level": d.expected_level, "incident_id": d.incident_id,
                 "participants": d.participants} for d in drill_service.list_drills(db_session=db_session)]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("id", "type", "scenario", "mode", "started", "score", "passed", "level (expected)")
    for r in rows:
        table.add_row(r["id"], r["type"], r["scenario"], r["mode"], r["started_at"],
                      "—" if r["score"] is None else f"{r['score']:.1f}", str(r["passed"]),
                      f"{r['level'] or '—'} ({r['expected_level'] or '—'})")
    console.print(table)


improvements_app = typer.Typer(help="Improvement items from drills, the readiness check and post-mortems",
                               no_args_is_help=True)
app.add_typer(improvements_app, name="improvements")


@improvements_app.command("list")
def improvements_list(all_: bool = typer.Option(False, "--all", help="Include closed items"),
                      as_json: bool = typer.Option(False, "--json"), home: Optional[Path] = None) -> None:
    """Open improvement items (owner, due date, overdue or not)."""
    _use_home(home)
    from rich.markup import escape

    from ledgerguard.improvements import service as items_service
    from ledgerguard.models import utcnow
    from ledgerguard.runtime import get_runtime

    now = utcnow()
    with get_runtime().session(read_only=True) as db_session:
        rows = [{"id": i.id, "source": i.source, "title": i.title, "owner": i.owner, "status": i.status,
                 "due_at": i.due_at.isoformat(timespec="minutes"), "overdue": i.status == "open" and i.due_at < now,
                 "times_seen": i.times_seen, "closed_by": i.closed_by, "resolution": i.resolution}
                for i in items_service.list_items(db_session=db_session, open_only=not all_)]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("id", "source", "title", "owner", "due", "status")
    for r in rows:
        table.add_row(r["id"], r["source"], escape(r["title"]), r["owner"], r["due_at"][:10],
                      r["status"] + (" [red](overdue)[/]" if r["overdue"] else ""))
    console.print(table)


@improvements_app.command("close")
def improvements_close(item: str = typer.Argument(..., help="Improvement item id"),
                       by: str = typer.Option(..., "--by", help="Your person id in contacts.yaml"),
                       resolution: str = typer.Option(..., "--resolution", help="What was done"),
                       home: Optional[Path] = None) -> None:
    """Close an improvement item, saying what was done."""
    _use_home(home)
    from ledgerguard.acknowledgement.service import UnknownPerson, check_person
    from ledgerguard.improvements import service as items_service
    from ledgerguard.register.service import NotFound
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    try:
        check_person(contacts=runtime.contacts, person_id=by)
        with runtime.session() as db_session:
            row = items_service.close_item(db_session=db_session, item_id=item, by=by, resolution=resolution)
            console.print(f"closed {row.id} by {row.closed_by}: {row.resolution}", highlight=False)
    except (UnknownPerson, NotFound, ValueError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None


# --- readiness and staff check-ins (issue 6) -----------------------------------------------------


@app.command()
def checkin(incident: str = typer.Argument(..., help="Incident id (or a unique prefix of at least 6 characters)"),
            by: str = typer.Option(..., "--by", help="Your person id in contacts.yaml"),
            status: str = typer.Option(..., "--status", help="ok, needs_support or unavailable"),
            note: str = typer.Option("", "--note", help="A note for the timeline (e.g. what support you need)"),
            home: Optional[Path] = typer.Option(None, "--home", help="LedgerGuard home folder")) -> None:
    """Check in after a 一级/二级 incident: fine (ok), needing support, or not available for the next one."""
    _use_home(home)
    from rich.markup import escape

    from ledgerguard.acknowledgement.service import UnknownPerson, check_person
    from ledgerguard.channels.contacts import ContactsError
    from ledgerguard.channels.messaging import format_dt, level_label
    from ledgerguard.readiness.checkins import CHECKIN_LEVELS, CHECKIN_STATUSES, CheckinRefused, record_checkin
    from ledgerguard.readiness.texts import STATUS_LABELS
    from ledgerguard.runtime import get_runtime

    settings = get_settings()
    en = settings.language == "en"
    t = (lambda zh, english: english if en else zh)
    if status not in CHECKIN_STATUSES:
        err.print(t(f"--status：无效的状态 {status!r}，可选 {'、'.join(CHECKIN_STATUSES)}",
                    f"--status: {status!r} is not one of {', '.join(CHECKIN_STATUSES)}"),
                  style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(2)
    runtime = get_runtime()
    try:
        person_id = check_person(contacts=runtime.contacts, person_id=by)
        with runtime.session() as db_session:
            found = _find_incident(db_session, incident, t)
            if found.level not in CHECKIN_LEVELS:
                level = level_label(found.level, settings.language) if found.level else t("尚未定级", "not classified")
                raise _AckRefused(t(f"事件 {found.id} 为{level}：只有一级/二级事件需要人员报到",
                                    f"incident {found.id} is {level}: staff check-ins are for level 1 and 2 incidents"))
            row, created = record_checkin(db_session=db_session, contacts=runtime.contacts, incident_id=found.id,
                                          person_id=person_id, status=status, note=note, via="cli")
            title, incident_id, at = found.title or found.emergency_type, found.id, row.checked_in_at
    except UnknownPerson as exc:
        err.print(t(f"未知的报到人：{exc}", str(exc)), style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1) from None
    except (ContactsError, _AckRefused, CheckinRefused) as exc:
        err.print(str(exc), style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1) from None

    person = runtime.contacts.person(person_id)
    table = Table(show_header=False, title=t("已记录报到", "Checked in") if created
                  else t("已更新报到（此前已报到，本次已记入时间线）", "Check-in updated (this one is on the timeline too)"))
    table.add_row(t("事件", "incident"), escape(f"{incident_id} — {title}"))
    table.add_row(t("报到人", "by"), escape(f"{person.name} ({person_id})"))
    table.add_row(t("状态", "status"), STATUS_LABELS["en" if en else "zh-CN"][status])
    if note.strip():
        table.add_row(t("备注", "note"), escape(note.strip()))
    table.add_row(t("时间", "at"), format_dt(at, tz=settings.timezone))
    console.print(table)


def _print_gaps(gaps: list[dict], *, en: bool, title: str) -> None:
    from rich.markup import escape

    t = (lambda zh, english: english if en else zh)
    if not gaps:
        console.print(title + t("：所有登记均在有效期内", ": every register is in date"), highlight=False)
        return
    table = Table(t("登记", "register"), t("缺口", "gap"), t("负责人", "owner"), t("截止", "due"),
                  *([t("改进事项", "improvement item")] if any("item_id" in g for g in gaps) else []), title=title)
    for g in gaps:
        cells = [g["register_label"], escape(g["text"]), escape(f"{g['owner_name']} ({g['owner']})"), g["due_on"]]
        if "item_id" in g:
            cells.append(g["item_id"] + (t("（新）", " (new)") if g.get("new") else ""))
        table.add_row(*cells)
    console.print(table)


@app.command("readiness")
def readiness_check(as_of: Optional[datetime] = typer.Option(None, "--as-of", formats=["%Y-%m-%d"],
                                                             help="The day to judge (default: today, agency time)"),
                    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON"),
                    check_only: bool = typer.Option(False, "--check-only", help="Only list the gaps: no flow run, "
                                                    "no improvement items, no email"),
                    home: Optional[Path] = typer.Option(None, "--home", help="LedgerGuard home folder")) -> None:
    """Run the weekly readiness check now: list the gaps, raise their improvement items and email the
    week's report (once per week and recipient). Exit 0 when it ran, 1 on bad agency data, 2 when the run failed."""
    _use_home(home)
    _install_masking()
    from ledgerguard.agency.models import AgencyDataError
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    en = runtime.settings.language == "en"
    t = (lambda zh, english: english if en else zh)
    day = as_of.date() if as_of else None
    if check_only:
        from tasks.readiness import assess, collect

        try:
            registers = collect(runtime, day)
            gaps = assess(runtime, registers)
        except AgencyDataError as exc:
            err.print(str(exc), style="red", highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(1) from None
        if as_json:
            print(json.dumps({"as_of": registers["as_of"], "week": registers["week"], "gaps": gaps},
                             ensure_ascii=False, indent=2))
            return
        _print_gaps(gaps, en=en, title=t(f"准备度检查 {registers['as_of']}：{len(gaps)} 项缺口",
                                         f"Readiness on {registers['as_of']}: {len(gaps)} gap(s)"))
        return
    from flows import readiness as readiness_flow

    state = readiness_flow(as_of=day, return_state=True)
    if not state.is_completed():
        err.print(t(f"准备度检查未能完成：{state.type.value} {state.message or ''}",
                    f"the readiness check did not complete: {state.type.value} {state.message or ''}"),
                  style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(2)
    outcome = state.result()
    if as_json:
        print(outcome.model_dump_json(indent=2))
        return
    _print_gaps(outcome.gaps, en=en, title=t(f"准备度周检 {outcome.week}（截至 {outcome.as_of}）：{len(outcome.gaps)} 项缺口",
                                              f"Readiness {outcome.week} (as of {outcome.as_of}): "
                                              f"{len(outcome.gaps)} gap(s)"))
    for item in outcome.no_longer_found:
        console.print(t(f"已不再发现，待关闭：{item['id']} {item['title']}（负责人 {item['owner']}）",
                        f"no longer found, waiting to be closed: {item['id']} {item['title']} (owner {item['owner']})"),
                      highlight=False, soft_wrap=True, markup=False)
    console.print(t(f"报告：{outcome.report_path}；发送 {len(outcome.sent)} 份，本周此前已发送 {len(outcome.skipped)} 份",
                    f"report: {outcome.report_path}; sent to {len(outcome.sent)}, already sent this week to "
                    f"{len(outcome.skipped)}"), highlight=False, soft_wrap=True, markup=False)


# --- the monthly compliance report (issue 7) -----------------------------------------------------

report_app = typer.Typer(help="Compliance reports: the monthly report to management", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("monthly")
def report_monthly(month: Optional[str] = typer.Option(None, "--month", help="YYYY-MM in the agency's time zone "
                                                      "(default: the previous calendar month)"),
                   as_json: bool = typer.Option(False, "--json", help="Print the outcome (every figure) as JSON"),
                   no_send: bool = typer.Option(False, "--no-send", help="File the report and its artifacts; "
                                                "email nobody"),
                   home: Optional[Path] = typer.Option(None, "--home", help="LedgerGuard home folder")) -> None:
    """Run the monthly compliance report now: MTTA/MTTR, SLA and obligation deadlines, drills,
    improvement items, delivery rates and Prefect's emergency runs of the month, with charts, emailed
    to the management list once per month and address. Exit 0 when it ran, 2 on a bad --month or a
    failed run."""
    _use_home(home)
    _install_masking()
    from ledgerguard.compliance.monthly import parse_month

    if month is not None:
        try:
            parse_month(month)
        except ValueError as exc:
            err.print(f"--{exc}", style="red", highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(2) from None
    from flows.monthly_report import monthly_report
    from ledgerguard.runtime import get_runtime

    en = get_runtime().settings.language == "en"
    t = (lambda zh, english: english if en else zh)
    state = monthly_report(month=month, send=not no_send, return_state=True)
    if not state.is_completed():
        err.print(t(f"月度合规报告未能完成：{state.type.value} {state.message or ''}",
                    f"the monthly report did not complete: {state.type.value} {state.message or ''}"),
                  style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(2)
    outcome = state.result()
    if as_json:
        print(outcome.model_dump_json(indent=2))
        return
    f = outcome.figures
    table = Table(t("指标", "figure"), t("数值", "value"), title=outcome.subject)

    def show(value) -> str:
        return "—" if value is None else str(value)

    for label, value in (
        (t("真实事件 / 演练事件", "incidents real / drill"), f"{f.incidents.total} / {f.incidents.drills}"),
        (t("MTTA 中位数（分钟）", "MTTA median (min)"), show(f.mtta.overall.median_minutes)),
        (t("MTTR 中位数（分钟）", "MTTR median (min)"), show(f.mttr.overall.median_minutes)),
        (t("确认时限 达成/未达成/未到期", "ack SLA met/missed/not due"),
         f"{f.sla.ack.met}/{f.sla.ack.missed}/{f.sla.ack.pending}"),
        (t("解决时限 达成/未达成/未到期", "resolve SLA met/missed/not due"),
         f"{f.sla.resolve.met}/{f.sla.resolve.missed}/{f.sla.resolve.pending}"),
        (t("到期义务 按时/逾期/未履行/未到期", "obligations on time/late/missed/open"),
         f"{f.obligations.met_on_time}/{f.obligations.met_late}/{f.obligations.missed}/{f.obligations.open}"),
        (t("演练 通过/评分", "drills passed/scored"), f"{f.drills.passed}/{f.drills.scored}"),
        (t("改进事项 未关闭/逾期", "improvement items open/overdue"), f"{f.improvements.open}/{f.improvements.overdue}"),
        (t("通知送达率", "delivery rate"),
         "—" if f.delivery_total.delivery_rate is None else f"{f.delivery_total.delivery_rate}%"),
        (t("应急运行 / 失败", "emergency runs / failed"), f"{f.runs.total} / {len(f.runs.bad_runs)}"),
    ):
        table.add_row(label, value)
    console.print(table)
    console.print(t(f"报告：{outcome.report_path}；发送 {len(outcome.sent)} 份，本月此前已发送 {len(outcome.skipped)} 份",
                    f"report: {outcome.report_path}; sent to {len(outcome.sent)}, already sent this month to "
                    f"{len(outcome.skipped)}"), highlight=False, soft_wrap=True, markup=False)


# --- the compliance archive (issue 7) -----------------------------------------------------------

export_app = typer.Typer(help="Export the compliance archive, or verify one offline", invoke_without_command=True)
app.add_typer(export_app, name="export")


@export_app.callback()
def export(ctx: typer.Context,
           start: Optional[datetime] = typer.Option(None, "--from", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z"],
                                                    help="First day (agency time) of the incidents to export"),
           end: Optional[datetime] = typer.Option(None, "--to", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z"],
                                                  help="Day after the last one (exclusive)"),
           out: Optional[Path] = typer.Option(None, "--out", help="New (or empty) folder for the archive"),
           home: Optional[Path] = None) -> None:
    """`export --from 2026-11-01 --to 2026-12-01 --out DIR`: the incidents opened in the range as a
    self-contained archive (JSONL records, reports, evidence, SHA-256 manifest, timeline chain head)."""
    if ctx.invoked_subcommand is not None:
        return
    if start is None or end is None or out is None:
        console.print("[red]export needs --from, --to and --out[/] (or: ledgerguard export verify ARCHIVE)")
        raise typer.Exit(2)
    _use_home(home)
    from zoneinfo import ZoneInfo

    from ledgerguard.archive.service import ArchiveError, export_archive
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    tz = ZoneInfo(runtime.settings.timezone)
    start, end = (d if d.tzinfo else d.replace(tzinfo=tz) for d in (start, end))
    try:
        with runtime.session(read_only=True) as db_session:
            manifest = export_archive(db_session=db_session, start=start, end=end, out=out,
                                      reports_dir=runtime.settings.reports_dir,
                                      allowed_roots=[runtime.settings.agency_path, runtime.settings.scratch_dir,
                                                     runtime.settings.home / "drills"],
                                      prefect_history=lambda ids: _archive_run_history(runtime, ids))
    except ArchiveError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    counts = ", ".join(f"{k} {v}" for k, v in manifest["records"].items() if v)
    console.print(f"archive {out}: {len(manifest['files'])} file(s), {manifest['evidence_files']} evidence file(s); "
                  f"records: {counts or 'none'}; timeline head {manifest['timeline_head']}", soft_wrap=True,
                  highlight=False)


def _history_api(runtime) -> Optional[str]:
    """The Prefect API whose run history is the record: PREFECT_API_URL, or `ledgerguard up`'s
    server on this home. None when neither: an ephemeral server would have no history at all, and
    every run the register names would look deleted."""
    from prefect.settings import PREFECT_API_URL

    from ledgerguard.intake.app import prefect_api_url

    return PREFECT_API_URL.value() or prefect_api_url(runtime.settings.home)


def _require_history_api(runtime, t) -> str:
    url = _history_api(runtime)
    if not url:
        err.print(t("没有可读取运行记录的 Prefect 服务器：请设置 PREFECT_API_URL，或先运行 `ledgerguard up`",
                    "no Prefect server to read the run history from: set PREFECT_API_URL or start `ledgerguard up`"),
                  style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(2)
    return url


def _archive_run_history(runtime, incident_ids: list[str]) -> dict:
    """Prefect's runs of these incidents (PREFECT_API_URL, or `up`'s server on this home), with
    their task runs, log lines and artifacts, one JSON row per run and incident."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = _history_api(runtime)
    if not url:
        raise RuntimeError("no Prefect server: set PREFECT_API_URL or start `ledgerguard up`")

    from tasks.history import read_runs
    from tasks.postmortem import incident_run_ids

    rows, missing, read_at = [], [], None
    with temporary_settings({PREFECT_API_URL: url}):
        for incident_id in incident_ids:
            with runtime.session(read_only=True) as db_session:
                ids = incident_run_ids(db_session=db_session, incident_id=incident_id)
            history = read_runs(run_ids=ids)
            rows += [{"incident_id": incident_id, **run.model_dump(mode="json")} for run in history.runs]
            missing += [{"incident_id": incident_id, "flow_run_id": run_id} for run_id in history.missing]
            read_at = history.read_at
    return {"runs": rows, "api_url": url, "read_at": read_at, "missing": missing}


@export_app.command("verify")
def export_verify(archive: Path = typer.Argument(..., help="The archive folder")) -> None:
    """Check an archive offline: every file against the manifest, every timeline record against its
    hash. Exit 1 naming each file or record that changed."""
    from ledgerguard.archive.service import verify_archive

    problems = verify_archive(archive)
    for problem in problems:
        console.print(f"[red]{problem}[/]", soft_wrap=True, highlight=False, markup=False)
    if problems:
        raise typer.Exit(1)
    console.print(f"archive {archive}: intact", highlight=False)


# --- retention and purge (issue 7: 保管期限) ---------------------------------------------------------


@app.command("retention")
def retention_cmd(as_json: bool = typer.Option(False, "--json", help="Print the policy and the incidents as JSON"),
                  home: Optional[Path] = typer.Option(None, "--home", help="LedgerGuard home folder")) -> None:
    """The retention policy (each record kind's period and legal source, the kinds each type's incidents
    hold) and, for each incident of the register, until when its record is kept."""
    _use_home(home)
    from zoneinfo import ZoneInfo

    from rich.markup import escape

    from ledgerguard.retention.service import retention_report
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    en = runtime.settings.language == "en"
    t = (lambda zh, english: english if en else zh)
    catalog, tz = runtime.catalog, runtime.settings.timezone
    policy = catalog.retention
    types = {}
    for entry in catalog:
        kinds = policy.kinds_for(entry.records, drill=False)
        types[entry.id] = {"kinds": kinds, "longest": policy.longest(kinds),
                           "period": policy.kinds[policy.longest(kinds)].period("en")}
    drill_kinds = policy.kinds_for([], drill=True)
    with runtime.session(read_only=True) as db_session:
        statuses = retention_report(db_session=db_session, catalog=catalog, tz=tz)
    if as_json:
        print(json.dumps({"source": policy.source, "counted_from": policy.counted_from,
                          "kinds": {k: v.model_dump(mode="json") for k, v in policy.kinds.items()},
                          "types": types, "drills": {"kinds": drill_kinds, "why": policy.drills.why},
                          "purge_records": policy.purge_records,
                          "incidents": [s.model_dump(mode="json") for s in statuses]}, ensure_ascii=False, indent=2))
        return
    language = "en" if en else "zh-CN"
    kinds_table = Table(t("类别", "kind"), t("名称", "name"), t("保管期限", "period"), t("依据", "source"),
                        title=t(f"保管期限（{policy.source}）", f"Retention periods ({policy.source})"))
    for kind_id, kind in policy.kinds.items():
        kinds_table.add_row(kind_id, escape(kind.name.get(language)), kind.period(language), escape(kind.source))
    console.print(kinds_table)
    types_table = Table(t("类型", "type"), t("所含记录类别", "kinds held"), t("最长期限", "longest"),
                        title=t("各类型事件记录的保管期限", "What each type's incident record holds"))
    for type_id, row in types.items():
        types_table.add_row(type_id, ", ".join(row["kinds"]), f"{row['longest']}: {row['period']}")
    types_table.add_row(t("（演练）", "(drills)"), ", ".join(drill_kinds),
                        f"{policy.longest(drill_kinds)}: {policy.kinds[policy.longest(drill_kinds)].period('en')}")
    console.print(types_table)
    console.print(t("期限自事件关闭所在会计年度终了后的第一天起算" if policy.counted_from == "accounting_year_end"
                    else "期限自事件关闭之日起算",
                    "periods count from 1 January after the year the incident closed (会计档案管理办法 Art. 15)"
                    if policy.counted_from == "accounting_year_end" else "periods count from the day it closed")
                  + t(f"；清除记录按 {policy.purge_records} 永久保存",
                      f"; purge records are kept permanently as {policy.purge_records}"), highlight=False)
    zone = ZoneInfo(tz)
    # one line per incident, not a table: the whole id is what `purge --incident` takes, at any width
    console.print(t(f"登记簿中的事件：{len(statuses)} 个", f"Incidents in the register: {len(statuses)}"),
                  style="bold", highlight=False)
    for s in statuses:
        if s.status in ("open", "acknowledged", "mitigated"):
            until = t("未关闭", "still open")
        elif s.permanent:
            until = t("永久保存", "kept permanently")
        else:
            until = t("保管至 ", "kept until ") + (s.retain_until.astimezone(zone).date().isoformat()
                                                  if s.retain_until else "—")
        closed = s.ended_at.astimezone(zone).date().isoformat() if s.ended_at else "—"
        console.print(f"{s.incident_id}  {s.emergency_type}{' (drill)' if s.drill else ''}  {s.status}  "
                      + t(f"关闭 {closed}  {until}  ", f"closed {closed}  {until}  ")
                      + (t("可清除", "purgeable") if s.purgeable else t("保留", "kept")),
                      soft_wrap=True, highlight=False, markup=False)


@app.command("purge")
def purge_cmd(before: Optional[datetime] = typer.Option(None, "--before", formats=["%Y-%m-%d"],
                                                        help="The incidents opened before this day (agency time)"),
              incident: Optional[list[str]] = typer.Option(None, "--incident", help="An incident id (repeatable)"),
              archive: Path = typer.Option(..., "--archive", help="The verified export archive that holds them "
                                                                  "(ledgerguard export)"),
              by: str = typer.Option(..., "--by", help="Your person id in contacts.yaml"),
              reason: str = typer.Option(..., "--reason", help="Why the records are purged"),
              execute: bool = typer.Option(False, "--execute", help="Really delete (default: a dry run)"),
              as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON"),
              home: Optional[Path] = typer.Option(None, "--home", help="LedgerGuard home folder")) -> None:
    """Purge incident records whose retention ended and that a verified archive holds; refuse the rest
    (still open, inside the period, not in the archive), saying why. A dry run unless --execute.
    Exit 0 nothing refused, 1 something refused, 2 bad input."""
    _use_home(home)
    from zoneinfo import ZoneInfo

    from ledgerguard.acknowledgement.service import UnknownPerson, check_person
    from ledgerguard.channels.contacts import ContactsError
    from ledgerguard.retention.service import PurgeInputError, plan_purge, purge
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    en = runtime.settings.language == "en"
    t = (lambda zh, english: english if en else zh)
    tz = ZoneInfo(runtime.settings.timezone)

    def bad(message: str) -> None:
        err.print(message, style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(2)

    if (before is None) == (not incident):
        bad(t("请给出 --before 日期或 --incident 编号（二选一）", "give --before DATE or --incident ID (one of them)"))
    if not reason.strip():
        bad(t("--reason：请说明清除的原因", "--reason: say why the records are purged"))
    try:
        person_id = check_person(contacts=runtime.contacts, person_id=by)
    except (UnknownPerson, ContactsError) as exc:
        bad(f"--by: {exc}")
    selection = dict(before=before.replace(tzinfo=tz) if before else None, incident_ids=list(incident or []) or None)
    try:
        if execute:
            with runtime.session() as db_session:
                result = purge(db_session=db_session, catalog=runtime.catalog, by=person_id, reason=reason,
                               archive=archive, reports_dir=runtime.settings.reports_dir, tz=tz, **selection)
            plan, purged = result.plan, result.purges
        else:
            with runtime.session(read_only=True) as db_session:
                plan = plan_purge(db_session=db_session, catalog=runtime.catalog, archive=archive,
                                  reports_dir=runtime.settings.reports_dir, tz=tz, **selection)
            purged = []
    except PurgeInputError as exc:
        bad(str(exc))
    if as_json:
        print(json.dumps({"executed": execute, "archive": str(archive),
                          "items": [i.model_dump(mode="json") for i in plan.items],
                          "purged": [{**p, "retain_until": p["retain_until"].isoformat()} for p in purged]},
                         ensure_ascii=False, indent=2))
    else:
        for item in plan.refused:
            console.print(t(f"拒绝 {item.incident_id}（{item.emergency_type}）：{item.reason}",
                            f"REFUSED {item.incident_id} ({item.emergency_type}): {item.reason}"),
                          soft_wrap=True, highlight=False, markup=False)
        for p in purged:
            rows = ", ".join(f"{k} {v}" for k, v in p["counts"].items() if v)
            console.print(t(f"已清除 {p['incident_id']}（{p['emergency_type']}）：清除记录 {p['purge_id']}，"
                            f"{p['tombstones']} 条时间线记录留下墓碑；{rows}",
                            f"PURGED {p['incident_id']} ({p['emergency_type']}): purge {p['purge_id']}, "
                            f"{p['tombstones']} timeline entries left as tombstones; {rows}"),
                          soft_wrap=True, highlight=False, markup=False)
        if not execute:
            for item in plan.to_purge:
                console.print(t(f"可清除 {item.incident_id}（{item.emergency_type}）：{item.reason}",
                                f"WOULD PURGE {item.incident_id} ({item.emergency_type}): {item.reason}"),
                              soft_wrap=True, highlight=False, markup=False)
            console.print(t(f"演练（dry run）：未删除任何内容；可清除 {len(plan.to_purge)} 个，拒绝 {len(plan.refused)} 个。"
                            "确认后加 --execute", f"dry run: nothing deleted; {len(plan.to_purge)} would go, "
                            f"{len(plan.refused)} refused. Add --execute to purge"), highlight=False)
        else:
            console.print(t(f"已清除 {len(purged)} 个，拒绝 {len(plan.refused)} 个",
                            f"purged {len(purged)}, refused {len(plan.refused)}"), highlight=False)
    if plan.refused:
        raise typer.Exit(1)


# --- post-mortems and the consistency check (issue 7) --------------------------------------------

postmortem_app = typer.Typer(help="Post-mortems: built from Prefect's run history and the register", no_args_is_help=True)
app.add_typer(postmortem_app, name="postmortem")


def _parse_action(text: str) -> dict:
    parts = [p.strip() for p in text.split("|")]
    if len(parts) != 3 or not all(parts):
        raise typer.BadParameter(f"--action {text!r}: expected \"what to do|owner id|YYYY-MM-DD\"")
    return {"title": parts[0], "owner": parts[1], "due": parts[2]}


def _run_postmortem(request, *, as_json: bool, t) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.postmortem import postmortem as postmortem_flow
    from ledgerguard.runtime import get_runtime

    url = _require_history_api(get_runtime(), t)
    with temporary_settings({PREFECT_API_URL: url}):
        state = postmortem_flow(request, return_state=True)
    if not state.is_completed():
        err.print(t(f"复盘未能完成：{state.type.value} {state.message or ''}",
                    f"the post-mortem did not complete: {state.type.value} {state.message or ''}"),
                  style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(2)
    outcome = state.result()
    if as_json:
        print(outcome.model_dump_json(indent=2))
        return
    console.print(t(f"事件 {outcome.incident_id} 的复盘：Prefect 运行 {outcome.runs} 个"
                    + (f"（{len(outcome.runs_missing)} 个已不在 Prefect 中）" if outcome.runs_missing else "")
                    + (f"，复盘意见第 {outcome.revision} 版" if outcome.revision else "，尚未填写根本原因")
                    + f"；发送 {len(outcome.sent)} 份",
                    f"post-mortem of {outcome.incident_id}: {outcome.runs} Prefect run(s)"
                    + (f" ({len(outcome.runs_missing)} no longer in Prefect)" if outcome.runs_missing else "")
                    + (f", review revision {outcome.revision}" if outcome.revision else ", root cause not entered yet")
                    + f"; sent to {len(outcome.sent)}"), highlight=False, soft_wrap=True, markup=False)
    for path in outcome.files:
        console.print(f"  {path}", highlight=False, soft_wrap=True, markup=False)


@postmortem_app.command("build")
def postmortem_build(incident: str = typer.Argument(..., help="Incident id (or a unique prefix of at least 6 characters)"),
                     send: bool = typer.Option(True, "--send/--no-send", help="Email it to the management list"),
                     as_json: bool = typer.Option(False, "--json"),
                     home: Optional[Path] = typer.Option(None, "--home", help="LedgerGuard home folder")) -> None:
    """Build an incident's post-mortem now (the `postmortem` flow, against PREFECT_API_URL or an
    ephemeral server): zh-CN and en, Markdown and HTML, artifact, email. Exit 1 unknown incident, 2 run failed."""
    _use_home(home)
    _install_masking()
    from flows.postmortem import PostmortemRequest
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    t = (lambda zh, english: english if runtime.settings.language == "en" else zh)
    try:
        with runtime.session(read_only=True) as db_session:
            incident_id = _find_incident(db_session, incident, t).id
    except _AckRefused as exc:
        err.print(str(exc), style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1) from None
    _run_postmortem(PostmortemRequest(incident_id=incident_id, send=send), as_json=as_json, t=t)


@postmortem_app.command("review")
def postmortem_review(incident: str = typer.Argument(..., help="Incident id (or a unique prefix of at least 6 characters)"),
                      by: str = typer.Option(..., "--by", help="Your person id in contacts.yaml"),
                      root_cause: str = typer.Option(..., "--root-cause", help="The root cause, in a sentence or more"),
                      factor: list[str] = typer.Option([], "--factor", help="A contributing factor (repeatable)"),
                      lesson: str = typer.Option("", "--lesson", help="Lessons learned"),
                      action: list[str] = typer.Option([], "--action",
                                                       help='An action item "what to do|owner id|YYYY-MM-DD" (repeatable)'),
                      send: bool = typer.Option(True, "--send/--no-send"),
                      as_json: bool = typer.Option(False, "--json"),
                      home: Optional[Path] = typer.Option(None, "--home", help="LedgerGuard home folder")) -> None:
    """Enter the root cause and action items of an incident (a new review revision; each action item
    becomes an improvement item), then rebuild and resend its post-mortem. Exit 1 unknown incident or
    person, 2 bad input or the run failed."""
    _use_home(home)
    _install_masking()
    from pydantic import ValidationError

    from flows.postmortem import PostmortemRequest
    from ledgerguard.compliance.postmortem import PostmortemReviewInput
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    t = (lambda zh, english: english if runtime.settings.language == "en" else zh)
    try:
        with runtime.session(read_only=True) as db_session:
            incident_id = _find_incident(db_session, incident, t).id
    except _AckRefused as exc:
        err.print(str(exc), style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1) from None
    known = {p.id for p in runtime.contacts.people}
    owners = [a["owner"] for a in (_parse_action(a) for a in action)]
    unknown = sorted({by, *owners} - known)
    if unknown:
        err.print(t(f"contacts.yaml 中没有人员：{', '.join(unknown)}", f"not a person of contacts.yaml: {', '.join(unknown)}"),
                  style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1)
    try:
        review = PostmortemReviewInput(entered_by=by, root_cause=root_cause, contributing_factors=list(factor),
                                       lessons=lesson, action_items=[_parse_action(a) for a in action])
    except ValidationError as exc:
        first = exc.errors()[0]
        err.print(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}", style="red", highlight=False,
                  soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    _run_postmortem(PostmortemRequest(incident_id=incident_id, review=review, send=send), as_json=as_json, t=t)


@app.command()
def consistency(start: Optional[datetime] = typer.Option(None, "--from", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z"],
                                                         help="Start (agency time; default: 8 days ago)"),
                end: Optional[datetime] = typer.Option(None, "--to", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z"],
                                                       help="End, exclusive (default: now)"),
                as_json: bool = typer.Option(False, "--json"),
                home: Optional[Path] = typer.Option(None, "--home", help="LedgerGuard home folder")) -> None:
    """Compare the register with Prefect's run history (PREFECT_API_URL): incidents without runs, runs
    Prefect no longer has, emergency runs (failed, crashed or not) that left no record. Nothing is
    sent; the scheduled `consistency-check` deployment emails what it finds. Exit 1 when a problem is found."""
    _use_home(home)
    from zoneinfo import ZoneInfo

    from ledgerguard.runtime import get_runtime
    from tasks.consistency import run_check

    runtime = get_runtime()
    tz = ZoneInfo(runtime.settings.timezone)
    start, end = ((d if d is None or d.tzinfo else d.replace(tzinfo=tz)) for d in (start, end))
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = _require_history_api(runtime, lambda zh, english: english if runtime.settings.language == "en" else zh)
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            report = run_check(runtime, start, end)
    except ValueError as exc:
        err.print(str(exc), style="red", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        console.print(f"consistency {report.start:%Y-%m-%d %H:%M} – {report.end:%Y-%m-%d %H:%M} UTC: "
                      f"{report.checked_incidents} incident(s), {report.checked_runs} emergency run(s), "
                      f"{len(report.problems)} problem(s)", highlight=False, soft_wrap=True, markup=False)
        for problem in report.problems:
            console.print(f"  [{problem.severity}] {problem}", style="red" if problem.severity == "error" else "yellow",
                          highlight=False, soft_wrap=True, markup=False)
    if not report.ok:
        raise typer.Exit(1)


# --- notices to people outside the agency (issue 7) ----------------------------------------------

notices_app = typer.Typer(help="Notice drafts (PIPL Art. 57, clients, CAC report, police): list, show, "
                               "approve, reject, send, record a filing, draft on demand", no_args_is_help=True)
app.add_typer(notices_app, name="notices")


def _notice_refused(exc: Exception, code: int = 1):
    """A refused notice command: the reason on stderr (it names the file or field), exit 1."""
    err.print(str(exc), soft_wrap=True, highlight=False, markup=False)
    raise typer.Exit(code) from None


@notices_app.command("list")
def notices_list(incident: Optional[str] = typer.Option(None, "--incident", help="Incident id or unique prefix"),
                 all_: bool = typer.Option(False, "--all", help="Include superseded versions"),
                 as_json: bool = typer.Option(False, "--json"), home: Optional[Path] = None) -> None:
    """Notice drafts with their state: drafted (waiting for approval), approved, rejected, sent, superseded."""
    _use_home(home)
    from rich.markup import escape

    from ledgerguard.notices import service as notices
    from ledgerguard.runtime import get_runtime

    with get_runtime().session(read_only=True) as db_session:
        try:
            incident_id = _find_incident(db_session, incident).id if incident else None
        except _AckRefused as exc:
            _notice_refused(exc)
        rows = [notices.describe(r) for r in notices.list_notices(db_session=db_session, incident_id=incident_id,
                                                                  include_superseded=all_)]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("id", "incident", "kind", "audience", "v", "status", "decided by", "file")
    for r in rows:
        state = r["status"] + (" (to be filed by hand)" if r["status"] == "approved"
                               and any(s.get("status") == "to_file" for s in r["sent_to"]) else "")
        table.add_row(r["id"], r["incident_id"][:12], r["kind"], escape(r["audience"]), str(r["version"]), state,
                      r["decided_by"] or "—", Path(r["path"]).name)
    console.print(table)


@notices_app.command("show")
def notices_show(notice: str = typer.Argument(..., help="Notice id (or a unique prefix of at least 6 characters)"),
                 home: Optional[Path] = None) -> None:
    """One draft: its state, file, hash check and text."""
    _use_home(home)
    from ledgerguard.notices import service as notices
    from ledgerguard.notices.models import NoticeRefused
    from ledgerguard.register.service import NotFound
    from ledgerguard.runtime import get_runtime

    with get_runtime().session(read_only=True) as db_session:
        try:
            row = notices.find_notice(db_session=db_session, ref=notice)
        except NotFound as exc:
            _notice_refused(exc)
        info = notices.describe(row)
        try:
            text, check = notices.verify_file(row), "matches the drafted SHA-256"
        except NoticeRefused as exc:
            text, check = None, str(exc)
    for key in ("id", "incident_id", "kind", "audience", "language", "version", "status", "decided_by",
                "decided_at", "reason", "sent_at", "path", "content_sha256"):
        console.print(f"{key}: {info[key] if info[key] not in (None, '') else '—'}", highlight=False, markup=False,
                      soft_wrap=True)
    for sent in info["sent_to"]:
        console.print(f"sent_to: {json.dumps(sent, ensure_ascii=False)}", highlight=False, markup=False,
                      soft_wrap=True)
    console.print(f"file: {check}", highlight=False, markup=False, soft_wrap=True)
    if text is not None:
        console.print("", text, sep="\n", highlight=False, markup=False, soft_wrap=True)


@notices_app.command("approve")
def notices_approve(notice: str = typer.Argument(..., help="Notice id (or a unique prefix of at least 6 characters)"),
                    by: str = typer.Option(..., "--by", help="Your person id in contacts.yaml (an approving role)"),
                    reason: str = typer.Option("", "--reason", help="A note for the timeline"),
                    send: bool = typer.Option(False, "--send", help="Send it (or record it as to be filed) at once"),
                    home: Optional[Path] = None) -> None:
    """Approve this exact version (bound to its SHA-256); refused when the file changed or the person
    has no approving role for the kind."""
    _use_home(home)
    from ledgerguard.notices import service as notices
    from ledgerguard.notices.drafting import load_runtime_policy
    from ledgerguard.notices.models import NoticeRefused
    from ledgerguard.register.service import NotFound
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    try:
        with runtime.session() as db_session:
            row = notices.approve(db_session=db_session, notice_id=notice, by=by, reason=reason,
                                  policy=load_runtime_policy(runtime), contacts=runtime.contacts, via="cli")
            notice_id, version = row.id, row.version
    except (NoticeRefused, NotFound) as exc:
        _notice_refused(exc)
    console.print(f"approved {notice_id} v{version} by {by}; it has not gone out yet: "
                  f"ledgerguard notices send {notice_id}" if not send else f"approved {notice_id} v{version} by {by}",
                  highlight=False, markup=False, soft_wrap=True)
    if send:
        _send_notice(runtime, notice_id, by)


def _send_notice(runtime, notice_id: str, by: Optional[str]) -> None:
    from ledgerguard.notices.models import NoticeRefused
    from ledgerguard.notices.sending import send_notice
    from ledgerguard.register.service import NotFound

    try:
        result = send_notice(runtime=runtime, notice_id=notice_id, by=by)
    except (NoticeRefused, NotFound) as exc:
        _notice_refused(exc)
    console.print(result.message, highlight=False, markup=False, soft_wrap=True)
    for ob in result.obligations_met:
        console.print(f"obligation met: {ob}", highlight=False, markup=False)
    if result.status == "failed":
        raise typer.Exit(1)


@notices_app.command("send")
def notices_send(notice: str = typer.Argument(..., help="Notice id (or a unique prefix of at least 6 characters)"),
                 by: Optional[str] = typer.Option(None, "--by", help="Who sends it (default: the approver)"),
                 home: Optional[Path] = None) -> None:
    """Send an approved notice once per recipient (a second send sends nothing); an authority's
    notice is recorded as "approved — to be filed by hand"."""
    _use_home(home)
    from ledgerguard.runtime import get_runtime

    _send_notice(get_runtime(), notice, by)


@notices_app.command("reject")
def notices_reject(notice: str = typer.Argument(..., help="Notice id (or a unique prefix of at least 6 characters)"),
                   by: str = typer.Option(..., "--by", help="Your person id in contacts.yaml (an approving role)"),
                   reason: str = typer.Option(..., "--reason", help="Why it must not go out"),
                   home: Optional[Path] = None) -> None:
    """Reject a draft (drafted or approved, not sent): it goes nowhere."""
    _use_home(home)
    from ledgerguard.notices import service as notices
    from ledgerguard.notices.drafting import load_runtime_policy
    from ledgerguard.notices.models import NoticeRefused
    from ledgerguard.register.service import NotFound
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    try:
        with runtime.session() as db_session:
            row = notices.reject(db_session=db_session, notice_id=notice, by=by, reason=reason,
                                 policy=load_runtime_policy(runtime), contacts=runtime.contacts, via="cli")
            console.print(f"rejected {row.id} v{row.version} by {by}: {row.reason}", highlight=False, markup=False,
                          soft_wrap=True)
    except (NoticeRefused, NotFound) as exc:
        _notice_refused(exc)


@notices_app.command("filed")
def notices_filed(notice: str = typer.Argument(..., help="Notice id (or a unique prefix of at least 6 characters)"),
                  by: str = typer.Option(..., "--by", help="Your person id in contacts.yaml"),
                  ref: str = typer.Option(..., "--ref", help="The filing's reference (portal receipt, case number)"),
                  home: Optional[Path] = None) -> None:
    """Record that an approved authority notice was filed by hand (portal, hotline, in person)."""
    _use_home(home)
    from ledgerguard.notices import service as notices
    from ledgerguard.notices.drafting import load_runtime_policy
    from ledgerguard.notices.models import NoticeRefused
    from ledgerguard.register.service import NotFound
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    try:
        policy = load_runtime_policy(runtime)
        with runtime.session() as db_session:
            row = notices.mark_filed(db_session=db_session, notice_id=notice, by=by, ref=ref, policy=policy,
                                     contacts=runtime.contacts)
            met = notices.fulfil_obligations(db_session=db_session, row=row, policy=policy)
            console.print(f"filed {row.id} v{row.version} by {by}, reference {ref.strip()}", highlight=False,
                          markup=False, soft_wrap=True)
    except (NoticeRefused, NotFound) as exc:
        _notice_refused(exc)
    for ob in met:
        console.print(f"obligation met: {ob}", highlight=False, markup=False)


@notices_app.command("draft")
def notices_draft(incident: str = typer.Argument(..., help="Incident id (or a unique prefix of at least 6 characters)"),
                  kind: Optional[str] = typer.Option(None, "--kind", help="An on-demand kind (cac_report, police); "
                                                                          "default: what the incident needs"),
                  by: str = typer.Option("ledgerguard", "--by", help="Who asks for the draft (for the timeline)"),
                  home: Optional[Path] = None) -> None:
    """Draft (or re-draft) an incident's notices now; a draft file changed on disk is restored."""
    _use_home(home)
    from ledgerguard.notices import service as notices
    from ledgerguard.notices.drafting import draft_for_incident, load_runtime_policy
    from ledgerguard.notices.models import NoticeRefused
    from ledgerguard.response.reporting import incident_snapshot, report_context
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    try:
        with runtime.session(read_only=True) as db_session:
            incident_id = _find_incident(db_session, incident).id
        policy = load_runtime_policy(runtime)
        snapshot = incident_snapshot(runtime=runtime, incident_id=incident_id)
        entry = runtime.catalog.get(snapshot["incident"]["emergency_type"])
        needed = None
        if kind is not None:
            if kind not in policy.kinds:
                err.print(f"--kind: unknown notice kind {kind!r}; kinds: {', '.join(policy.kinds)}")
                raise typer.Exit(2)
            needed = [n for n in notices.needed_notices(policy=policy, entry=entry, incident=snapshot["incident"],
                                                        obligations=snapshot["obligations"]) if n.kind == kind] \
                or notices.on_demand_notices(policy=policy, entry=entry, incident=snapshot["incident"], kind=kind)
        context = report_context(runtime=runtime, entry=entry, snapshot=snapshot, run={"requested_by": by})
        drafted = draft_for_incident(runtime=runtime, entry=entry, snapshot=snapshot, context=context,
                                     needed=needed, policy=policy, drafted_by=by, restore=True)
    except (_AckRefused, NoticeRefused) as exc:
        _notice_refused(exc)
    if not drafted:
        console.print(f"incident {incident_id} needs no notice (on demand: ledgerguard notices draft {incident_id} "
                      f"--kind cac_report)", highlight=False, markup=False, soft_wrap=True)
    for d in drafted:
        state = f"new v{d.version}" if d.created else f"unchanged v{d.version} ({d.status})"
        console.print(f"{d.id} {d.kind} {d.audience}: {state} {d.path}"
                      + (f" — missing: {', '.join(d.missing)}" if d.missing else ""),
                      highlight=False, markup=False, soft_wrap=True)


@app.command()
def ui(home: Optional[Path] = None, port: int = 4200) -> None:
    """Start the embedded Prefect server (and its UI) on this home's run history; Ctrl-C stops it."""
    _use_home(home)
    import time

    from ledgerguard.embedded import PrefectServer

    server = PrefectServer(prefect_home=get_settings().home / "prefect", port=port)
    with server:
        console.print(f"Prefect UI: {server.ui_url}  (API {server.api_url}); Ctrl-C to stop")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


@app.command()
def serve(home: Optional[Path] = None,
          limit: Optional[int] = typer.Option(
              None, help="Most flow runs at once from this process (default LEDGERGUARD_FLOW_RUN_LIMIT; 0: none)")) -> None:
    """Serve every deployment in deployments/ from this process (events, schedules, UI runs)."""
    _use_home(home)
    _install_masking()
    from deployments import serve_all

    limit = get_settings().flow_run_limit if limit is None else limit
    serve_all(limit=limit or None)


@app.command()
def up(home: Optional[Path] = typer.Option(None, help="LedgerGuard home folder (default: ./.ledgerguard)"),
       port: int = typer.Option(4200, help="Port of the Prefect server and UI"),
       intake_port: int = typer.Option(8600, help="Port of the intake HTTP app"),
       smtp_port: int = typer.Option(8025, help="Port of the local SMTP sink (when LEDGERGUARD_SMTP_HOST is unset)"),
       clients: int = typer.Option(200, help="Clients in the sample agency generated on first start"),
       poll: int = typer.Option(1, help="Seconds between the runner's polls for scheduled runs (latency)"),
       limit: Optional[int] = typer.Option(
           None, help="Most flow runs at once (default LEDGERGUARD_FLOW_RUN_LIMIT; 0: none)")) -> None:
    """Start the always-on stack: Prefect server + UI, every deployment served, relay, intake, SMTP sink."""
    _use_home(home)
    _install_masking()
    from ledgerguard.stack import run_up

    def log(message: str) -> None:
        console.print(message, soft_wrap=True, highlight=False)

    sys.exit(run_up(home=get_settings().home.resolve(), prefect_port=port, intake_port=intake_port,
                    smtp_port=smtp_port, clients=clients, poll_frequency=poll, serve_limit=limit, log=log))


@app.command()
def status(home: Optional[Path] = None,
           as_json: bool = typer.Option(False, "--json", help="Print the status as JSON")) -> None:
    """Say what runs where (URLs, ports, alive or not), open incidents by level, outbox counts."""
    _use_home(home)
    from ledgerguard.stack import stack_status

    report = stack_status(home=get_settings().home.resolve())
    if as_json:
        console.print_json(json.dumps(report, default=str))
        return
    console.print(f"LedgerGuard in {report['home']}: {report['status']}"
                  + (f" (pid {report['pid']}, {'alive' if report['up_alive'] else 'gone'})" if report["pid"] else ""),
                  highlight=False, soft_wrap=True)
    table = Table("component", "where", "state")
    for name, info in report["components"].items():
        where = info.get("ui_url") or info.get("url") or (
            f"{info['host']}:{info['port']}" if "host" in info and "port" in info else info.get("path") or "")
        if name == "prefect":
            where = f"UI {info['ui_url']}  API {info['api_url']}"
        flags = []
        for key in ("alive", "healthy", "listening", "running"):
            if key in info:
                flags.append(f"{key}={'yes' if info[key] else 'no'}")
        if "pid" in info:
            flags.append(f"pid {info['pid']}")
        if info.get("flow_run_limit"):
            flags.append(f"at most {info['flow_run_limit']} runs at once")
        if info.get("reason"):
            flags.append(info["reason"])
        table.add_row(name, where, ", ".join(flags))
    console.print(table)
    incidents = report["open_incidents"]
    by_level = ", ".join(f"level {k}: {v}" for k, v in incidents["by_level"].items()) or "none"
    console.print(f"open incidents: {incidents['total']} ({by_level})"
                  + (f"; open drill incidents: {incidents['drills']}" if incidents.get("drills") else ""),
                  highlight=False)
    outbox = report.get("outbox")
    console.print(f"outbox: {outbox if outbox is not None else 'not in this register yet'}", highlight=False)


@app.command()
def deploy(work_pool: str = typer.Option(..., "--work-pool", help="Prefect work pool to deploy to"),
           source: Optional[str] = typer.Option(None, help="Git URL or folder workers pull the code from "
                                                         "(default: this project's folder)"),
           image: Optional[str] = typer.Option(None, help="Docker image for docker/kubernetes pools")) -> None:
    """Register every deployment in deployments/ on a work pool (scale-out), with the same triggers and schedules."""
    from ledgerguard.config import PROJECT_ROOT

    from deployments import DEPLOYMENTS, deploy_all

    ids = deploy_all(work_pool=work_pool, source=source or str(PROJECT_ROOT), image=image)
    for spec, deployment_id in zip(DEPLOYMENTS, ids):
        console.print(f"{spec.flow.name}/{spec.name} → {deployment_id}", highlight=False)


@app.command()
def relay(home: Optional[Path] = None,
          api_url: Optional[str] = typer.Option(None, help="Prefect API URL (default: PREFECT_API_URL)"),
          once: bool = typer.Option(False, help="Deliver what is due once and exit")) -> None:
    """Deliver the register's outbox to Prefect's events API (what `up` runs in the background)."""
    _use_home(home)
    import signal as signals
    import threading

    from ledgerguard.relay import drain, run_relay_forever
    from ledgerguard.runtime import get_runtime

    url = api_url or os.environ.get("PREFECT_API_URL")
    if not url:
        err.print("no Prefect API: set PREFECT_API_URL or pass --api-url")
        raise typer.Exit(2)
    if once:
        result = drain(engine_or_runtime=get_runtime(), api_url=url)
        console.print(f"delivered {result.delivered}, failed {result.failed}")
        raise typer.Exit(0 if not result.failed else 1)
    stop = threading.Event()
    for signum in (signals.SIGINT, signals.SIGTERM):
        signals.signal(signum, lambda *_: stop.set())
    console.print(f"relay: outbox → {url}/events (Ctrl-C to stop)")
    total = run_relay_forever(stop, engine_or_runtime=get_runtime(), api_url=url)
    console.print(f"relay stopped: {total.delivered} delivered, {total.failed} failed attempts")


@app.command()
def demo(home: Optional[Path] = typer.Option(None, help="Demo home folder (default: ./.ledgerguard)"),
         clients: int = typer.Option(200, help="Clients in the sample agency"),
         client: Optional[str] = typer.Option(None, help="Client whose ledger to break (default: a VIP-free one)"),
         port: int = typer.Option(4200, help="Port of the local Prefect server"),
         keep_server: bool = typer.Option(False, help="Leave the Prefect server running afterwards")) -> None:
    """Break a sample client's ledger and run the ledger-loss flow end to end on the embedded default."""
    from ledgerguard.demo import run_demo

    _use_home(home)
    sys.exit(run_demo(console=console, clients=clients, client=client, port=port, keep_server=keep_server))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
