"""Monthly compliance report stages: read the month from the register and from Prefect's run
history, check the two against each other, compute the figures (pandas, in
:mod:`ledgerguard.compliance.monthly`), draw the charts, render, file and send the report.

Each reader is its own task with retries (a locked SQLite register or a 503 from Prefect's API
is worth another try); the figures are plain pydantic models, so what a task returns is what the
next one reads and what figures.json keeps.
"""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from ledgerguard.channels.contacts import management_recipients
from ledgerguard.compliance.consistency import ConsistencyReport, check_consistency
from ledgerguard.compliance.models import RunHistory
from ledgerguard.compliance.monthly import (
    MonthlyFigures,
    MonthWindow,
    RegisterRows,
    catalog_sla_lookup,
    compute_figures,
    month_window,
    previous_month,
    read_register,
)
from ledgerguard.models import Stage
from ledgerguard.response.notifying import send_once
from ledgerguard.runtime import get_runtime
from tasks.history import read_runs, read_runs_between

__all__ = ["MonthlyReportOutcome", "check_month", "compute_month", "publish_monthly_report", "read_month_history",
           "read_month_register", "resolve_month", "step_key"]


class MonthlyReportOutcome(BaseModel):
    """What one monthly report run produced and where it went."""

    month: str = Field(description="YYYY-MM in the agency's time zone")
    report_dir: str
    report_path: str
    markdown_path: str
    figures_path: str
    charts: list[str] = Field(default_factory=list)
    subject: str
    sent: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="recipients this month's report already reached")
    send: bool = True
    flow_run_id: str | None = None
    figures: MonthlyFigures


def step_key(month: str) -> str:
    """The delivery step: one report per month and address, whatever the number of runs."""
    return f"monthly-report:{month}"


@task(name="monthly-window", cache_policy=NO_CACHE)
def resolve_month(month: str | None = None) -> MonthWindow:
    """The calendar month to report, in the agency's time zone (default: the previous month).
    A malformed month fails here, naming the field, without retries."""
    runtime = get_runtime()
    tz = runtime.agency.tz
    return month_window(month=month or previous_month(tz=tz), tz=tz)


@task(name="monthly-register", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def read_month_register(window: MonthWindow) -> RegisterRows:
    """The month's incidents, obligations, drills, improvement items and notifications."""
    runtime = get_runtime()
    with runtime.session(read_only=True) as db_session:
        rows = read_register(db_session=db_session, window=window, sla_lookup=catalog_sla_lookup(runtime.catalog))
    get_run_logger().info("register %s: %d incident(s), %d obligation(s), %d drill(s), %d notification(s)",
                          window.month, len(rows.incidents), len(rows.obligations), len(rows.drills),
                          len(rows.notifications))
    return rows


@task(name="monthly-history", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def read_month_history(window: MonthWindow) -> RunHistory:
    """The emergency flow runs Prefect expected to start in the month."""
    history = read_runs_between(start=window.start, end=window.end, emergency_only=True)
    get_run_logger().info("Prefect %s: %d emergency run(s)", window.month, len(history.runs))
    return history


@task(name="monthly-consistency", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def check_month(window: MonthWindow, history: RunHistory) -> ConsistencyReport:
    """The register against Prefect for the month: the runs the register links to the month's
    incidents are read back by id (a run opened last month but linked now is still found), so
    a run Prefect no longer has is named."""
    runtime = get_runtime()
    with runtime.session(read_only=True) as db_session:
        report = check_consistency(db_session=db_session, history=history, start=window.start, end=window.end,
                                   read_linked=lambda run_ids: read_runs(run_ids=run_ids, details=False))
    logger = get_run_logger()
    if report.ok:
        logger.info("consistency %s: %d incident(s), %d run(s): consistent", window.month, report.checked_incidents,
                    report.checked_runs)
    else:
        logger.warning("consistency %s: %d problem(s): %s", window.month, len(report.problems), report.counts())
    return report


@task(name="monthly-figures", cache_policy=NO_CACHE)
def compute_month(rows: RegisterRows, history: RunHistory, consistency: ConsistencyReport | None,
                  as_of: datetime | None = None) -> MonthlyFigures:
    """Every figure of the report (pandas over the two sources), as of the register's reading."""
    return compute_figures(rows=rows, history=history, consistency=consistency, as_of=as_of)


def _type_names(runtime) -> dict[str, dict[str, str]]:
    names: dict[str, dict[str, str]] = {"zh-CN": {}, "en": {}}
    for entry in runtime.catalog:
        names["zh-CN"][entry.id] = entry.name.zh
        names["en"][entry.id] = entry.name.en
    return names


@task(name="monthly-report", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def publish_monthly_report(figures: MonthlyFigures, send: bool = True) -> MonthlyReportOutcome:
    """Charts, the report files, the Prefect artifacts, and one email per management address
    and month (``send_once``: a re-run or a retry of the same month sends nothing again)."""
    from ledgerguard.compliance.charts import render_charts
    from ledgerguard.compliance.report import TEMPLATE, markdown_for_artifact, render_report, write_report
    from tasks.people import ui_run_url

    runtime = get_runtime()
    settings = runtime.settings
    language = settings.language
    run_id = str(flow_run.id) if flow_run.id else None
    names = _type_names(runtime)
    folder = settings.reports_dir / "monthly" / figures.month
    charts = render_charts(figures, language=language, type_names=names)
    message = render_report(figures=figures, charts=charts, language=language, agency_name=runtime.agency.config.name,
                            type_names=names["en" if language == "en" else "zh-CN"],
                            templates_dir=settings.templates_dir, timezone_name=settings.timezone,
                            run_url=ui_run_url(run_id) if run_id else None, folder=folder)
    files = write_report(folder=folder, message=message, charts=charts, figures=figures)

    slug = figures.month  # yyyy-mm: artifact keys allow lowercase letters, digits and dashes
    create_markdown_artifact(key=f"monthly-report-{slug}", markdown=markdown_for_artifact(message.markdown or message.text, folder),
                             description=f"Monthly compliance report {figures.month}")
    create_table_artifact(
        key=f"monthly-figures-{slug}",
        table=_figure_table(figures),
        description=f"Monthly compliance figures {figures.month} (every figure: {files.figures})")

    sent, skipped, failed = [], [], []
    if send:
        for recipient in management_recipients(runtime.contacts):
            result = send_once(runtime=runtime, incident_id=None, stage=Stage.RECORD, step=step_key(figures.month),
                               recipient=recipient, message=message, template=TEMPLATE, attachments=files.charts,
                               flow_run_id=run_id)
            {"sent": sent, "skipped": skipped}.get(result.status, failed).append(
                recipient.address if result.status != "failed" else f"{recipient.address}: {result.error}")
    if failed:
        raise RuntimeError("monthly report delivery failed: " + "; ".join(failed))
    get_run_logger().info("monthly report %s: %d incident(s); sent to %d, already sent to %d", figures.month,
                          figures.incidents.total, len(sent), len(skipped))
    return MonthlyReportOutcome(
        month=figures.month, report_dir=str(folder), report_path=str(files.html), markdown_path=str(files.markdown),
        figures_path=str(files.figures), charts=[str(p) for p in files.charts], subject=message.subject,
        sent=sent, skipped=skipped, send=send, flow_run_id=run_id, figures=figures)


def _figure_table(f: MonthlyFigures) -> list[dict[str, object]]:
    """The headline figures as rows (figure, value) for the Prefect UI."""
    rows: list[tuple[str, object]] = [
        ("incidents (real)", f.incidents.total), ("incidents (drill)", f.incidents.drills),
        ("MTTA median min", f.mtta.overall.median_minutes), ("MTTA mean min", f.mtta.overall.mean_minutes),
        ("MTTR median min", f.mttr.overall.median_minutes), ("MTTR mean min", f.mttr.overall.mean_minutes),
        ("SLA ack met", f.sla.ack.met), ("SLA ack missed", f.sla.ack.missed), ("SLA ack pending", f.sla.ack.pending),
        ("SLA resolve met", f.sla.resolve.met), ("SLA resolve missed", f.sla.resolve.missed),
        ("SLA resolve pending", f.sla.resolve.pending),
        ("obligations due", f.obligations.total), ("obligations met on time", f.obligations.met_on_time),
        ("obligations met late", f.obligations.met_late), ("obligations missed", f.obligations.missed),
        ("obligations open", f.obligations.open),
        ("drills", f.drills.total), ("drills passed", f.drills.passed), ("drill mean score", f.drills.mean_score),
        ("improvement items open", f.improvements.open), ("improvement items overdue", f.improvements.overdue),
        ("notifications", f.delivery_total.total), ("delivery rate %", f.delivery_total.delivery_rate),
        ("emergency runs", f.runs.total), ("runs failed/crashed/cancelled", len(f.runs.bad_runs)),
    ]
    rows += [(f"MTTA median min: {s.key}", s.median_minutes) for s in f.mtta.by_type]
    rows += [(f"MTTR median min: {s.key}", s.median_minutes) for s in f.mttr.by_type]
    rows += [(f"delivery rate %: {c.channel}", c.delivery_rate) for c in f.delivery]
    if f.consistency is not None:
        rows.append(("consistency problems", len(f.consistency.get("problems") or [])))
    return [{"figure": k, "value": "—" if v is None else v} for k, v in rows]
