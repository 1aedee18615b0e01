"""Mail server down during an incident, English by setting, and masked logs — under real Prefect."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.prefect


def _break_ledger(client_id: str, count: int = 3) -> None:
    from ledgerguard.detectors import get_injector
    from ledgerguard.detectors.base import InjectionContext
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    get_injector("ledger.delete_vouchers").inject(
        InjectionContext(agency=runtime.agency, resource=f"ledger:{client_id}",
                         scratch_dir=runtime.settings.scratch_dir), count=count)


def _use_settings(monkeypatch, **env) -> None:
    from ledgerguard.config import reset_settings
    from ledgerguard.runtime import reset_runtime

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    reset_runtime()


def test_mail_server_down_records_failures_and_a_later_run_delivers_each_once(live, monkeypatch):
    from flows import ledger_loss
    from ledgerguard.embedded import free_port
    from ledgerguard.register import service as register
    from ledgerguard.response.models import LedgerLossRequest
    from ledgerguard.runtime import get_runtime

    sink = live["sink"]
    _use_settings(monkeypatch, LEDGERGUARD_SMTP_PORT=str(free_port()))  # nothing listens there
    _break_ledger("C0002")
    state = ledger_loss(LedgerLossRequest(client_id="C0002", source="test"), return_state=True)
    assert state.is_failed(), "an undelivered report must fail the run visibly"
    assert sink.messages() == []

    runtime = get_runtime()
    with runtime.session() as db_session:
        incident = register.list_incidents(db_session=db_session)[0]
        # Remediation did not wait for the mail server.
        assert incident.status == "mitigated"
        notes = register.list_notifications(db_session=db_session, incident_id=incident.id)
        assert notes and all(n.status == "failed" and n.last_error for n in notes)
        staff = [n for n in notes if n.stage == "notify"]
        assert staff and all(n.attempts >= 3 for n in staff)  # the task's own retries
        incident_id = incident.id

    _use_settings(monkeypatch, LEDGERGUARD_SMTP_PORT=str(sink.port))
    ledger_loss(LedgerLossRequest(client_id="C0002", source="test"))
    with get_runtime().session() as db_session:
        notes = register.list_notifications(db_session=db_session, incident_id=incident_id)
        # The request to approve the swap-in was answered meanwhile: it stays recorded as failed
        # (with its error, in the report) and is not sent again for a decision already made.
        requests = [n for n in notes if n.template == "approval_request"]
        assert requests and all(n.status == "failed" and n.last_error for n in requests)
        notes = [n for n in notes if n not in requests]
        assert notes and all(n.status == "sent" for n in notes)
        expected = len(notes)
    received = sink.messages()
    assert len(received) == expected
    assert len({(str(m["To"]), str(m["Subject"])) for m in received}) == expected  # none twice

    ledger_loss(LedgerLossRequest(client_id="C0002", source="test"))
    assert len(sink.messages()) == expected


def test_english_by_setting(live, monkeypatch):
    from flows import ledger_loss
    from ledgerguard.response.models import LedgerLossRequest

    _use_settings(monkeypatch, LEDGERGUARD_LANGUAGE="en")
    _break_ledger("C0003")
    outcome = ledger_loss(LedgerLossRequest(client_id="C0003", source="test"))
    assert outcome.level_label == "Level 4"
    subjects = [str(m["subject"]) for m in live["sink"].messages()]
    assert subjects and all("Level 4" in s for s in subjects), subjects
    assert not any("四级" in s for s in subjects)


def test_personal_data_is_masked_in_prefect_logs(prefect_server):
    from prefect import flow, get_client, get_run_logger
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.respond import PREFECT_LOGGERS
    from ledgerguard.masking import install_log_masking

    @flow(name="masking-probe")
    def probe() -> None:
        install_log_masking(PREFECT_LOGGERS)
        get_run_logger().warning("client phone 13812345678, card 6222021234567890123, id 11010519491231002X")

    state = probe(return_state=True)
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        import time

        logs = []
        for _ in range(50):  # the API log handler ships logs in the background
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            if any("client phone" in log.message for log in logs):
                break
            time.sleep(0.2)
    text = "\n".join(log.message for log in logs)
    assert "client phone" in text
    for secret in ("13812345678", "6222021234567890123", "11010519491231002X"):
        assert secret not in text
