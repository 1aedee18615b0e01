"""Every emergency flow, run under Prefect on a healthy sample agency, finds nothing and says so:
no incident in the register, the signal kept, every detector's reason in the outcome."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

pytestmark = pytest.mark.prefect


def healthy_request(emergency_type: str, runtime):
    """The flow's request for something that exists in the sample agency and is fine."""
    from ledgerguard.response.models import TYPED_REQUESTS, BackupFailureRequest, LedgerLossRequest

    agency = runtime.agency
    options = {"source": "test", "remediate": False}
    if emergency_type == "ledger_loss":
        return LedgerLossRequest(client_id=agency.client_ids[0], **options)
    if emergency_type == "backup_failure":
        return BackupFailureRequest(**options)
    model = TYPED_REQUESTS[emergency_type]
    local = datetime.now(agency.tz)
    values = {
        "vendor_breach": "bookkeeping-saas",
        "annual_deadline": local.year,
        "wrong_filing": f"{(local.replace(day=1) - timedelta(days=1)):%Y-%m}",
        "urgent_claim": sorted(p.stem for p in (agency.root / "claims" / "requests").glob("R*.json")
                               if not p.stem.endswith(".trail"))[0],
    }
    if emergency_type in values:
        return model(**{model.resource_field: values[emergency_type]}, **options)
    return model(**options)  # the form's default: the agency's portal, share, site, "all", "current"


def flow_types() -> list[str]:
    from flows import EMERGENCY_FLOWS

    return sorted(EMERGENCY_FLOWS)


@pytest.mark.parametrize("emergency_type", flow_types())
def test_a_healthy_agency_records_no_incident(live, emergency_type):
    from flows import EMERGENCY_FLOWS
    from ledgerguard.register import service as register
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    request = healthy_request(emergency_type, runtime)
    outcome = EMERGENCY_FLOWS[emergency_type](request, return_state=True).result()

    entry = runtime.catalog.get(emergency_type)
    assert outcome.status == "no_incident" and outcome.incident_id is None, outcome
    assert len(outcome.clear_reasons) == len(entry.detectors), outcome.clear_reasons
    assert not any("could not run" in reason for reason in outcome.clear_reasons), outcome.clear_reasons
    with runtime.session() as db_session:
        assert register.list_incidents(db_session=db_session) == []
        shared = request.to_request()
        assert register.count_signals(db_session=db_session, dedup_key=shared.to_signal().dedup_key,
                                      since=datetime(2000, 1, 1), action=None) == 1
