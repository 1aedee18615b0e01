"""`ledgerguard demo` — part of the CLI entry point (it starts servers and imports the flows).

Everything is real: a sample agency on disk, a local SMTP sink writing .eml files, a persistent
Prefect server on SQLite, a ledger broken by the same injector drills use, and the
`ledger-loss` flow run end to end against all of it.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

from ledgerguard.config import get_settings, reset_settings
from ledgerguard.embedded import PrefectServer, port_is_free


def _pick_client(agency, db_session_factory) -> str:
    """A non-VIP client with no open incident, so each demo run opens a fresh one."""
    from ledgerguard.register import service as register

    with db_session_factory() as db_session:
        open_resources = {i.resource for i in register.list_incidents(db_session=db_session)
                          if i.status in ("open", "acknowledged", "mitigated")}
    clients = agency.clients
    for row in clients.itertuples():
        if not bool(row.vip) and f"ledger:{row.client_id}" not in open_resources:
            return str(row.client_id)
    return str(clients.iloc[0]["client_id"])


def run_demo(*, console: Console, clients: int = 200, client: str | None = None, port: int = 4200,
             keep_server: bool = False) -> int:
    from ledgerguard.channels.smtp_sink import SmtpSink
    from ledgerguard.masking import install_log_masking
    from ledgerguard.runtime import get_runtime, reset_runtime

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    started = time.time()

    console.rule("LedgerGuard demo — 账套丢失应急演示")
    agency_dir = settings.agency_path
    if not (agency_dir / "agency.yaml").exists():
        from ledgerguard.sample.generator import generate_agency

        console.print(f"1. Generating the sample agency ({clients} clients) in {agency_dir} …")
        generate_agency(agency_dir, clients=clients)
    else:
        console.print(f"1. Using the sample agency in {agency_dir}")

    sink_port = settings.smtp_port if port_is_free(settings.smtp_port) else 0
    sink = SmtpSink(settings.mail_dir, host=settings.smtp_host, port=sink_port)
    sink.start()
    if sink.port != settings.smtp_port:
        os.environ["LEDGERGUARD_SMTP_PORT"] = str(sink.port)
    console.print(f"2. SMTP sink on {settings.smtp_host}:{sink.port} writing .eml files to {settings.mail_dir}")

    server = PrefectServer(prefect_home=settings.home / "prefect", port=port)
    console.print("3. Starting the local Prefect server (SQLite) …")
    server.start()
    os.environ.update(server.env())
    reset_settings()
    reset_runtime()
    install_log_masking()
    console.print(f"   Prefect API {server.api_url} ({'reused' if server.reused else 'started'})")

    try:
        runtime = get_runtime()
        agency = runtime.agency
        client_id = client or _pick_client(agency, runtime.session)
        from ledgerguard.detectors import get_injector
        from ledgerguard.detectors.base import InjectionContext

        injector = get_injector("ledger.delete_vouchers")
        report = injector.inject(InjectionContext(agency=agency, resource=f"ledger:{client_id}",
                                                  scratch_dir=settings.scratch_dir),
                                 count=8)
        console.print(f"4. Broke client {client_id}'s ledger: {report.summary}")

        console.print("5. Running the ledger-loss flow (detect → classify → notify → remediate → record) …")
        before = set(settings.mail_dir.glob("*.eml"))
        from flows import ledger_loss
        from ledgerguard.response.models import LedgerLossRequest

        approver = _second_person(runtime)
        with _approver_at_the_keyboard(console, approver, server.ui_url):
            state = ledger_loss(LedgerLossRequest(client_id=client_id, source="demo", requested_by="demo"),
                                return_state=True)
        outcome = state.result()
        parent_run_id = str(state.state_details.flow_run_id)
        emails = sorted(set(settings.mail_dir.glob("*.eml")) - before)

        table = Table(title=f"Incident {outcome.incident_id}", show_header=False)
        table.add_row("client / ledger", f"{client_id} → {agency.ledger_path(client_id)}")
        table.add_row("status", outcome.status)
        table.add_row("level", f"{outcome.level_label} ({outcome.priority}), regulatory grade {outcome.regulatory_grade}")
        table.add_row("why", "\n".join(outcome.rationale))
        table.add_row("notified", "\n".join(outcome.notified) or "—")
        table.add_row("runbook", "\n".join(f"{s.step_id}: {s.status} — {s.summary}" for s in outcome.steps))
        table.add_row("obligations", "\n".join(outcome.obligations) or "—")
        console.print(table)
        console.print(f"Report:      {outcome.report_path}", soft_wrap=True)
        console.print(f"Post-mortem: {outcome.postmortem_path}", soft_wrap=True)
        if outcome.incident_id:
            console.print("6. Building the post-mortem from Prefect's run history and the register …")
            from flows.postmortem import PostmortemRequest, postmortem

            pm_state = postmortem(PostmortemRequest(incident_id=outcome.incident_id), return_state=True)
            if pm_state.is_completed():
                pm = pm_state.result()
                console.print(f"   {pm.runs} Prefect run(s) joined with the register; zh-CN and en, Markdown and HTML:",
                              soft_wrap=True)
                for path in pm.files:
                    console.print(f"   {path}", soft_wrap=True)
            else:
                console.print(f"   [yellow]post-mortem not built: {pm_state.message}[/]", soft_wrap=True)
        console.print(f"Emails:      {len(emails)} new .eml file(s) in {settings.mail_dir}", soft_wrap=True)
        for path in emails:
            console.print(f"             {path.name}", soft_wrap=True)
        restored = [s for s in outcome.steps if s.step_id.endswith("swap_in") or "swap" in s.step_id]
        if restored:
            console.print(f"Restored: {restored[0].summary}")
        console.print(f"Prefect UI on the same history: {server.ui_url}/runs/flow-run/{parent_run_id}",
                      soft_wrap=True)
        if outcome.incident_id and outcome.status in ("open", "mitigated"):
            console.print(f"Take it over: ledgerguard ack {outcome.incident_id} --by <your id>  (or the one-click "
                          "link in the notification; with `ledgerguard up` the escalation runs and its form waits "
                          "in the UI)", soft_wrap=True)
        if not keep_server:
            console.print(f"(The server stops now; reopen the same history with: ledgerguard ui --home {settings.home})")
        console.print(f"Done in {time.time() - started:.1f} s.")
        ok = outcome.status in ("resolved", "mitigated")
        return 0 if ok else 2
    finally:
        sink.stop()
        if not keep_server:
            _drain_prefect_workers()
            server.stop()


def _second_person(runtime):
    """The demo's approver: someone who may approve the swap-in (the requester is "demo")."""
    step = runtime.catalog.get("ledger_loss").step("swap_in")
    return next(p for p in runtime.contacts.people if set(p.roles) & set(step.approvers))


@contextmanager
def _approver_at_the_keyboard(console: Console, person, ui_url: str):
    """While the flow runs, ``person`` answers its approval form as they would in the UI's Resume
    dialog (the same API call), so the demo shows the four-eyes pause without a browser."""
    import contextvars
    import threading

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    stop = threading.Event()
    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))

    def answer() -> None:
        answered: set[str] = set()
        while not stop.wait(0.5):
            try:
                with get_client(sync_client=True) as client:
                    runs = client.read_flow_runs(flow_run_filter=paused)
                for run in runs:
                    key = run.state.state_details.pause_key or ""
                    if not key.startswith("approval-") or f"{run.id}:{key}" in answered:
                        continue
                    console.print(f"   The swap-in waits for a second person: {ui_url}/runs/flow-run/{run.id} → "
                                  f"Resume. {person.name} ({person.id}) approves it there.", soft_wrap=True)
                    resume_flow_run(run.id, run_input={"approver": person.id, "decision": "approve",
                                                       "reason": "演示：暂存账套记录数与试算平衡已核对"})
                    answered.add(f"{run.id}:{key}")
            except Exception:  # noqa: BLE001 — the run may have just left the pause; look again
                continue

    thread = threading.Thread(target=contextvars.copy_context().run, args=(answer,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _drain_prefect_workers() -> None:
    """Send the run logs and events still queued in this process before the server goes away
    (otherwise Prefect reports "Error logging to API" after the demo has finished)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=5)
        except Exception:  # noqa: BLE001 — best effort at shutdown; the history is already stored
            pass
