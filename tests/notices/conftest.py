"""A real insider-exfiltration incident (DLP bulk export injected, the real flow under Prefect) whose
obligations call for PIPL, client and police notices."""

from __future__ import annotations

import email
import email.policy

import pytest


def run_insider(**request):
    from flows import insider_exfiltration
    from ledgerguard.response.models import InsiderExfiltrationRequest

    return insider_exfiltration(InsiderExfiltrationRequest(staff_id="all", source="test", **request),
                                return_state=True).result()


@pytest.fixture
def insider(live):
    from ledgerguard.detectors import InjectionContext, get_injector
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    get_injector("dlp.inject_bulk_export").inject(
        InjectionContext(agency=runtime.agency, resource="user:all", scratch_dir=runtime.settings.scratch_dir))
    outcome = run_insider()
    assert outcome.incident_created, outcome
    return {**live, "outcome": outcome, "runtime": runtime}


def mails(sink) -> list:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(sink.directory.glob("*.eml"))]


def drafts(runtime, incident_id: str, **filters) -> list:
    from ledgerguard.notices import service as notices

    with runtime.session(read_only=True) as db_session:
        return [notices.describe(r) for r in notices.list_notices(db_session=db_session, incident_id=incident_id,
                                                                  **filters)]


def timeline_kinds(runtime, incident_id: str) -> list[str]:
    from ledgerguard.register import service as register

    with runtime.session(read_only=True) as db_session:
        return [e.kind for e in register.get_timeline(db_session=db_session, incident_id=incident_id)]


def obligation_status(runtime, incident_id: str) -> dict[str, str]:
    from ledgerguard.register import service as register

    with runtime.session(read_only=True) as db_session:
        return {o.obligation_id: o.status for o in register.list_obligations(db_session=db_session,
                                                                              incident_id=incident_id)}
