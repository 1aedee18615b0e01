"""A vendor's breach notice, end to end under Prefect: graded, notified, and the PIPL Art. 57
notice drafted for approval (file, artifact, timeline, attached to the report)."""

from __future__ import annotations

import email
import email.policy

import pytest

pytestmark = pytest.mark.prefect


def test_vendor_breach_notice_drafts_the_pipl57_notice_for_approval(live):
    from prefect import get_client

    from flows import vendor_breach
    from ledgerguard.detectors import InjectionContext, get_injector
    from ledgerguard.register import service as register
    from ledgerguard.response.models import VendorBreachRequest
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    resource = "vendor:bookkeeping-saas"
    get_injector("vendor.inject_notice").inject(
        InjectionContext(agency=runtime.agency, resource=resource, scratch_dir=runtime.settings.scratch_dir),
        clients=5, data_kinds=["name", "id_number", "bank_card", "salary"])

    outcome = vendor_breach(VendorBreachRequest(vendor_id="bookkeeping-saas", source="test", remediate=False),
                            return_state=True).result()

    assert outcome.incident_created and outcome.level is not None
    assert any("57" in line for line in outcome.obligations), outcome.obligations
    notice = runtime.settings.reports_dir / outcome.incident_id / f"notice-pipl57-{outcome.incident_id}.md"
    text = notice.read_text(encoding="utf-8")
    # what Art. 57 requires: kinds, cause and harm; remedies and what people can do; contact details
    assert "身份证号码" in text and "银行卡号" in text and "可能造成的危害" in text
    assert "您可以采取的措施" in text and "开户银行" in text
    dp = runtime.contacts.with_role("data_protection")
    assert dp and dp[0].name in text
    assert "须经负责人审批后发送" in text

    with runtime.session() as db_session:
        kinds = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=outcome.incident_id)]
    assert kinds.count("notice.drafted") == 1

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = f"notice-pipl57-{outcome.incident_id}"
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert [a.key for a in found] == [key]

    # the draft goes to management with the report, not to anyone outside
    reports = []
    for path in sorted(live["sink"].directory.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        names = [part.get_filename() for part in message.iter_attachments()]
        if notice.name in names:
            reports.append(message)
    management = set(runtime.contacts.management_list)
    assert reports and all(str(m["To"]) in management for m in reports)

    # a second run with the same facts drafts nothing new
    vendor_breach(VendorBreachRequest(vendor_id="bookkeeping-saas", source="test", remediate=False))
    with runtime.session() as db_session:
        kinds = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=outcome.incident_id)]
    assert kinds.count("notice.drafted") == 1
