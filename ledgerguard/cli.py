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

        from ledgerguard.register.models import TimelineEntry

        count = db_session.scalar(select(func.count()).select_from(TimelineEntry))
    if problems:
        for problem in problems:
            err.print(f"[red]TAMPERED[/red] {problem}", highlight=False)
        raise typer.Exit(1)
    console.print(f"timeline intact: {count} entries verified")


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
                                                     runtime.settings.home / "drills"])
    except ArchiveError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    counts = ", ".join(f"{k} {v}" for k, v in manifest["records"].items() if v)
    console.print(f"archive {out}: {len(manifest['files'])} file(s), {manifest['evidence_files']} evidence file(s); "
                  f"records: {counts or 'none'}; timeline head {manifest['timeline_head']}", soft_wrap=True,
                  highlight=False)


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
