"""Post-mortem stages: gather the incident's runs from Prefect and its records from the register,
render the post-mortem in Chinese and English (Markdown and HTML), store it as an artifact and
send it to the management list; a person's review (root cause, action items) is recorded first."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from markdown_it import MarkdownIt
from markupsafe import Markup
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field
from sqlalchemy import select

from ledgerguard.channels.contacts import management_recipients
from ledgerguard.channels.messaging import render_message
from ledgerguard.compliance.models import INCIDENT_TAG
from ledgerguard.compliance.postmortem import (
    PostmortemReviewInput,
    latest_review,
    load_penalties,
    postmortem_context,
    record_review,
)
from ledgerguard.models import Stage, utcnow
from ledgerguard.register import service as register
from ledgerguard.register.models import DrillRecord, Incident, TimelineEntry, as_utc
from ledgerguard.response.notifying import send_once
from ledgerguard.response.reporting import incident_snapshot, report_context, write_text
from ledgerguard.runtime import get_runtime
from tasks.history import read_runs, read_tagged_runs

TEMPLATE = "incident_postmortem"
LANGUAGES = ("zh-CN", "en")
# Raw HTML in an alert field must never reach the reader's mail client as markup.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


class PostmortemOutcome(BaseModel):
    incident_id: str
    revision: int | None = None
    status: str
    runs: int
    runs_missing: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    sent: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    exposure_totals: dict[str, float] = Field(default_factory=dict)


def incident_run_ids(*, db_session, incident_id: str, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Every flow run the register ties to the incident: linked runs, runs that wrote its
    timeline, the drill run that played it (post-mortem runs left out)."""
    ids = [link.flow_run_id for link in register.list_flow_runs(db_session=db_session, incident_id=incident_id)]
    ids += list(db_session.scalars(select(TimelineEntry.flow_run_id).where(
        TimelineEntry.incident_id == incident_id, TimelineEntry.flow_run_id.is_not(None)).distinct()))
    ids += list(db_session.scalars(select(DrillRecord.flow_run_id).where(
        DrillRecord.incident_id == incident_id, DrillRecord.flow_run_id.is_not(None))))
    # Post-mortem runs write to the timeline too (the build, its mails); they record the incident,
    # they did not handle it. Each one says so with a postmortem.* entry.
    recorders = set(db_session.scalars(select(TimelineEntry.flow_run_id).where(
        TimelineEntry.incident_id == incident_id, TimelineEntry.kind.like("postmortem.%"))))
    return [i for i in dict.fromkeys(ids) if i and i not in recorders and i not in exclude]


def gather_history(runtime, incident_id: str):
    """Prefect's record of the incident: the runs the register names, and runs tagged with it."""
    current = frozenset({str(flow_run.id)}) if flow_run.id else frozenset()
    with runtime.session() as db_session:
        ids = incident_run_ids(db_session=db_session, incident_id=incident_id, exclude=current)
    tagged = read_tagged_runs(tags_any=[f"{INCIDENT_TAG}{incident_id}"])
    ids += [r.id for r in tagged.runs if r.id not in ids and r.id not in current]
    return read_runs(run_ids=ids)


def _clients(runtime, snapshot) -> tuple[list[dict], int | None]:
    out = []
    try:
        agency = runtime.agency
        total = len(agency.client_ids)
    except Exception:  # noqa: BLE001 — a post-mortem must still be built when the agency files are broken
        return [{"client_id": c, "name": "", "vip": False, "accountant_id": ""}
                for c in snapshot["incident"]["affected_clients"] or []], None
    for client_id in snapshot["incident"]["affected_clients"] or []:
        try:
            c = agency.client(client_id)
            out.append({"client_id": client_id, "name": c.name, "vip": bool(c.vip), "accountant_id": c.accountant_id})
        except Exception:  # noqa: BLE001 — a client since removed from clients.csv is still listed
            out.append({"client_id": client_id, "name": "", "vip": False, "accountant_id": ""})
    return out, total


def gather_register(runtime, incident_id: str) -> dict:
    """The register's side of the post-mortem, read once for both languages."""
    snapshot = incident_snapshot(runtime=runtime, incident_id=incident_id)
    with runtime.session() as db_session:
        review = latest_review(db_session=db_session, incident_id=incident_id)
        signals = [{"source": s.source, "dedup_key": s.dedup_key, "summary": s.summary, "received_at": s.received_at,
                    "observed_at": s.observed_at, "status": s.status, "flow_run_id": s.flow_run_id}
                   for s in register.list_signals(db_session=db_session, incident_id=incident_id)]
        if review is not None:
            db_session.expunge(review)
    clients, total = _clients(runtime, snapshot)
    return {"entry": runtime.catalog.get(snapshot["incident"]["emergency_type"]), "snapshot": snapshot,
            "review": review, "signals": signals, "clients": clients, "clients_total": total,
            "penalties": load_penalties(runtime.settings.catalog_dir)}


def render_postmortem(runtime, *, record: dict, history, language: str) -> tuple[str, str, object]:
    """(markdown, html, message) of the post-mortem in ``language``."""
    entry, snapshot = record["entry"], record["snapshot"]
    context = report_context(runtime=runtime, entry=entry, snapshot=snapshot, run={})
    context["language"] = language
    context["entry"]["name"] = entry.name.zh if language.startswith("zh") else entry.name.en
    context["pm"] = postmortem_context(snapshot=snapshot, signals=record["signals"], history=history,
                                       review=record["review"], penalties=record["penalties"],
                                       clients=record["clients"], clients_total=record["clients_total"],
                                       language=language)
    context["body_html"] = ""  # the first pass renders the Markdown the HTML is made from
    kwargs = {"name": TEMPLATE, "language": language, "templates_dir": runtime.settings.templates_dir}
    message = render_message(context=context, **kwargs)
    markdown = message.markdown or message.text
    context["body_html"] = Markup(_MARKDOWN.render(markdown))
    html = render_message(context=context, **kwargs).html
    return markdown, html, dataclasses.replace(message, html=html)


def postmortem_dir(reports_dir: Path, incident_id: str) -> Path:
    return Path(reports_dir) / incident_id / "postmortem"


@task(name="record-postmortem-review", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def enter_review(incident_id: str, review: PostmortemReviewInput, via: str = "ui") -> int:
    """Store the person's review as a new revision; its action items become improvement items."""
    runtime = get_runtime()
    known = {p.id for p in runtime.contacts.people}
    with runtime.session() as db_session:
        row = record_review(db_session=db_session, incident_id=incident_id, review=review, known_people=known, via=via,
                            flow_run_id=str(flow_run.id) if flow_run.id else None)
        return row.revision


@task(name="build-postmortem", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def build_and_send_postmortem(incident_id: str, send: bool = True) -> PostmortemOutcome:
    runtime = get_runtime()
    logger = get_run_logger()
    history = gather_history(runtime, incident_id)
    record = gather_register(runtime, incident_id)
    folder = postmortem_dir(runtime.settings.reports_dir, incident_id)
    files: list[Path] = []
    primary = runtime.settings.language if runtime.settings.language in LANGUAGES else LANGUAGES[0]
    rendered = {}
    for language in (primary, *[lang for lang in LANGUAGES if lang != primary]):
        markdown, html, message = render_postmortem(runtime, record=record, history=history,
                                                    language=language)
        rendered[language] = (markdown, message)
        files.append(write_text(folder / f"postmortem-{incident_id}.{language}.md", markdown))
        files.append(write_text(folder / f"postmortem-{incident_id}.{language}.html", html))
    markdown, message = rendered[primary]
    create_markdown_artifact(key=f"postmortem-{incident_id}", markdown=markdown,
                             description=f"Post-mortem of incident {incident_id} (register + Prefect run history)")
    create_table_artifact(
        key=f"postmortem-runs-{incident_id}",
        table=[{"run": r.name, "flow": r.flow_name, "state": r.state_name, "seconds": round(r.run_seconds, 1),
                "tasks": len(r.task_runs), "started": str(r.start_time or "")} for r in history.runs],
        description=f"Prefect runs that handled incident {incident_id}")

    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        status = incident.status
        review = latest_review(db_session=db_session, incident_id=incident_id)
        revision = review.revision if review else None
        register.append_timeline(db_session=db_session, incident_id=incident_id, stage=Stage.RECORD.value,
                                 kind="postmortem.built", flow_run_id=str(flow_run.id) if flow_run.id else None,
                                 message=f"post-mortem built from {len(history.runs)} Prefect run(s)"
                                         + (f", {len(history.missing)} no longer in Prefect" if history.missing else "")
                                         + (f", review revision {revision}" if revision else ", no review yet"),
                                 data={"files": [str(p) for p in files], "runs": [r.id for r in history.runs],
                                       "missing": history.missing})
    sent, failed = [], []
    if send:
        # One mail per incident state and review revision: a re-run that changes neither sends nothing.
        step = f"postmortem:{status}:r{revision or 0}"
        for recipient in management_recipients(runtime.contacts):
            outcome = send_once(runtime=runtime, incident_id=incident_id, stage=Stage.RECORD, step=step,
                                recipient=recipient, message=message, template=TEMPLATE, attachments=files,
                                flow_run_id=str(flow_run.id) if flow_run.id else None)
            (failed if outcome.status == "failed" else sent).append(f"{recipient.address} ({outcome.status})")
    logger.info("post-mortem of %s: %d run(s), %d missing, sent to %d", incident_id, len(history.runs),
                len(history.missing), len(sent))
    result = PostmortemOutcome(incident_id=incident_id, revision=revision, status=status, runs=len(history.runs),
                               runs_missing=history.missing, files=[str(p) for p in files], sent=sent, failed=failed)
    if failed:
        raise RuntimeError("post-mortem delivery failed: " + "; ".join(failed))
    return result


@task(name="incidents-due-a-postmortem", cache_policy=NO_CACHE)
def incidents_due_postmortem(days: int = 7) -> list[str]:
    """Incidents resolved or closed in the last ``days`` days: their post-mortem is built (and
    sent once per state and review revision)."""
    runtime = get_runtime()
    since = utcnow() - timedelta(days=days)
    with runtime.session() as db_session:
        rows = db_session.scalars(select(Incident).where(Incident.status.in_(("resolved", "closed")))
                                  .order_by(Incident.opened_at))
        return [i.id for i in rows if as_utc(i.resolved_at or i.closed_at or i.updated_at) >= since]
