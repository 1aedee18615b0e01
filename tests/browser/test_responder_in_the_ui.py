"""A responder in the real Prefect UI (Debian's Chromium, headless, driven by Playwright with the
system browser): start `ledger-loss` from the deployment's custom-run form, take the incident
over in the escalation's resume form, try to approve one's own run (refused), have another
person approve the swap-in, then check the register and the emails.

Screenshots of every step: test-artifacts/browser/<test>/ (or $LEDGERGUARD_TEST_ARTIFACTS/browser/).
The bundled catalog is used as it is: the 四级 chain waits 480 min, so the form stays up.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledgerguard.config import PROJECT_ROOT
from tests.support.prefect_ui import browser_missing
from tests.support.served import served_stack, wait_for

pytestmark = pytest.mark.prefect
CLIENT = "C0002"


def _artifacts(name: str) -> Path:
    root = Path(os.environ.get("LEDGERGUARD_TEST_ARTIFACTS") or PROJECT_ROOT / "test-artifacts")
    folder = root / "browser" / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory, agency_template):
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    with served_stack(tmp_path_factory.mktemp("browser") / "home", agency_template) as served:
        yield served


def _runs(stack, **filters) -> list[dict]:
    from tests.support.served import api

    response = api("POST", f"{stack.api_url}/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_ASC", **filters})
    response.raise_for_status()
    return response.json()


def _paused(stack, run_id: str, prefix: str) -> dict | None:
    run = next((r for r in _runs(stack) if r["id"] == run_id), None)
    key = ((run or {}).get("state") or {}).get("state_details", {}).get("pause_key") or ""
    return run if run and run["state_type"] == "PAUSED" and key.startswith(prefix) else None


def test_a_responder_starts_acknowledges_and_approves_in_the_ui(stack):
    from playwright.sync_api import sync_playwright

    from ledgerguard.approvals.service import list_approvals
    from ledgerguard.channels.contacts import load_contacts
    from ledgerguard.register import service as register
    from tests.support.prefect_ui import close_browser, launch_browser, resume_run, shot, start_custom_run

    shots = _artifacts("responder")
    home = stack.home
    contacts = load_contacts(home / "agency" / "contacts.yaml")
    runtime = stack.runtime()
    swap_in = runtime.catalog.get("ledger_loss").step("swap_in")
    approvers = [p.id for p in contacts.people if set(p.roles) & set(swap_in.approvers)]
    requester, approver = approvers[0], approvers[1]
    responder = next(p.id for p in contacts.people if p.id not in (requester, approver))

    from ledgerguard.agency import load_agency
    from ledgerguard.detectors import get_injector
    from ledgerguard.detectors.base import InjectionContext

    get_injector("ledger.delete_vouchers").inject(InjectionContext(
        agency=load_agency(home / "agency"), resource=f"ledger:{CLIENT}", scratch_dir=home / "scratch"), count=5)

    ui = stack.api_url.removesuffix("/api")
    with sync_playwright() as playwright:
        browser, context, page = launch_browser(playwright, artifacts_dir=shots)
        try:
            # 1. The duty lead starts the response from the deployment's custom-run form.
            run_id = start_custom_run(page, ui, flow_name="ledger-loss", deployment_name="ledger-loss",
                                      artifacts_dir=shots,
                                      fields={"Client ID": CLIENT, "Requested by": requester,
                                              "What was observed": "客户反映凭证缺失"})

            # 2. The incident is graded; its escalation holds the acknowledgement form.
            def escalation_form():
                return next((r for r in _runs(stack, flow_runs={"tags": {"all_": ["escalation"]}})
                             if r["state_type"] == "PAUSED"), None)

            form = wait_for(escalation_form, timeout=180, what="the escalation's acknowledgement form")
            assert form["state_name"] == "Suspended"
            resume_run(page, ui, form["id"], artifacts_dir=shots, api_url=stack.api_url,
                       fields={"确认人 Responder": responder, "备注 Note": "我来处理"})

            # 3. The run waits for its swap-in to be approved; the requester tries to approve it.
            first = wait_for(lambda: _paused(stack, run_id, "approval-"), timeout=180,
                             what="the ledger-loss run to wait for the swap-in's approval")
            first_key = first["state"]["state_details"]["pause_key"]
            resume_run(page, ui, run_id, artifacts_dir=shots, api_url=stack.api_url,
                       fields={"审批人 Approver": requester, "决定 Decision": "approve", "理由 Reason": "我自己批"})
            again = wait_for(lambda: (r := _paused(stack, run_id, "approval-"))
                             and r["state"]["state_details"]["pause_key"] != first_key and r, timeout=180,
                             what="the run to refuse the self-approval and wait again")
            assert again["state_name"] == "Suspended"

            # 4. Another approver approves, with a reason.
            resume_run(page, ui, run_id, artifacts_dir=shots, api_url=stack.api_url,
                       fields={"审批人 Approver": approver, "决定 Decision": "approve",
                               "理由 Reason": "暂存账套已核对：凭证数与试算平衡一致"})
            wait_for(lambda: next(r for r in _runs(stack) if r["id"] == run_id)["state_type"] == "COMPLETED",
                     timeout=240, what="the ledger-loss run to complete")
            page.goto(f"{ui}/v2/runs/flow-run/{run_id}")
            page.get_by_role("main").get_by_role("tablist").first.wait_for()
            shot(page, shots, "run-completed")
        finally:
            close_browser(browser, context, artifacts_dir=shots)

    # 5. The register and the emails tell the same story.
    with runtime.session() as db_session:
        (incident,) = [i for i in register.list_incidents(db_session=db_session)
                       if i.resource == f"ledger:{CLIENT}"]
        assert (incident.acknowledged_by, incident.acknowledged_via) == (responder, "ui")
        assert incident.status == "mitigated"   # restored; the reconciliation with the client is open
        (approval,) = list_approvals(db_session=db_session, incident_id=incident.id)
        assert (approval.status, approval.decided_by, approval.via) == ("approved", approver, "ui")
        assert approval.reason.startswith("暂存账套已核对") and approval.requested_by == requester
        assert register.get_action(db_session=db_session, incident_id=incident.id, step_id="swap_in").status \
            == "succeeded"
        kinds = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=incident.id)]
        assert "acknowledged" in kinds and kinds.index("approval.refused") < kinds.index("approval.approved")
        incident_id = incident.id
    subjects = [str(m["subject"]) for m in stack.sink.messages()
                if incident_id in (m.get_body(preferencelist=("plain",)) or m).get_content()]
    assert any(s.startswith("[四级]") for s in subjects), subjects           # the notifications
    assert any("[待审批]" in s for s in subjects), subjects                  # the approval request
    assert any("运行报告" in s for s in subjects), subjects                   # the run report
    assert len(list(shots.glob("*.png"))) >= 8
