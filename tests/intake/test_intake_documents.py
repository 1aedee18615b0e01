"""Documents entered through the intake: an urgent claim request with its e-invoices, a vendor's
breach notice — stored where the detectors read them, then raised as signals of their type."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from ledgerguard.register import service
from ledgerguard.register.models import SignalRecord
from tests.intake.conftest import OPS, PROM


@pytest.fixture
def agency(agency_dir):
    from ledgerguard.agency import load_agency

    return load_agency(agency_dir)


@pytest.fixture
def client_with_agency(agency, make_client):
    return make_client()


def invoice(no: str, amount: float) -> str:
    return base64.b64encode(json.dumps({"invoice_no": no, "amount_yuan": amount}).encode()).decode()


def claim_body(client_id: str, request_id: str = "R20260629-77", **extra) -> dict:
    return {
        "request_id": request_id, "client_id": client_id, "requested_at": "2026-06-29T17:00:00+08:00",
        "urgent": True, "requested_by": "客户财务", "channel": "form",
        "claims": [
            {"claim_id": "1", "amount_yuan": 320.5, "category": "差旅费", "invoice_no": "INV-001",
             "documents": ["inv-001.json"]},
            {"claim_id": "2", "amount_yuan": 88.0, "category": "办公用品", "invoice_no": "",
             "documents": []},
        ],
        "attachments": [{"name": "inv-001.json", "content_base64": invoice("INV-001", 320.5)}],
        **extra,
    }


def test_a_claim_request_is_stored_with_its_documents_and_raised_as_a_signal(client_with_agency, agency, tmp_path):
    from ledgerguard.catalog.service import load_catalog
    from ledgerguard.response.detection import run_detectors
    from ledgerguard.sources import claims as source

    client = client_with_agency
    cid = agency.client_ids[0]
    r = client.post("/api/v1/claims", json=claim_body(cid), headers=OPS)
    assert r.status_code == 202, r.text
    [sig] = r.json()["signals"]
    assert sig["emergency_type"] == "urgent_claim" and sig["resource"] == "claim:R20260629-77"

    path, request = source.load_request(agency, "R20260629-77")
    assert request.client_id == cid and request.urgent
    assert request.claims[0].documents == ["R20260629-77/inv-001.json"]
    assert (source.documents_dir(agency) / "R20260629-77" / "inv-001.json").is_file()

    state = client.app.state.intake
    from ledgerguard.register.db import session_scope

    with session_scope(state.engine) as s:
        [item] = service.list_outbox(db_session=s)
        assert item.payload["payload"]["request"]["request_id"] == "R20260629-77"

    # the detectors read what was stored: one claim supported, one without an invoice
    entry = load_catalog().get("urgent_claim")
    found = run_detectors(entry=entry, agency=agency, resource="claim:R20260629-77", scratch_dir=tmp_path,
                          now=datetime(2026, 6, 29, 9, 5, tzinfo=timezone.utc))
    assert found.facts["claims_total"] == 2 and found.facts["claims_supported"] == 1

    # the same document again: nothing changes; another document under the same id: 409
    before = path.read_bytes()
    again = client.post("/api/v1/claims", json=claim_body(cid), headers=OPS)
    assert again.status_code == 202 and path.read_bytes() == before
    other = claim_body(cid)
    other["claims"][0]["amount_yuan"] = 999
    conflict = client.post("/api/v1/claims", json=other, headers=OPS)
    assert conflict.status_code == 409 and conflict.json()["errors"][0]["field"] == "request_id"
    assert path.read_bytes() == before


@pytest.mark.parametrize("change, field", [
    (lambda b: b.update(client_id="C9999"), "client_id"),
    (lambda b: b["attachments"][0].update(content_base64="***"), "attachments.0.content_base64"),
    (lambda b: b["claims"][0].update(documents=["../../clients.csv"]), "claims.0.documents"),
    (lambda b: b.update(requested_at="2026-06-29T17:00:00"), "requested_at"),
    (lambda b: b["attachments"][0].update(name="../evil.json"), "attachments.0.name"),
])
def test_a_bad_claim_request_is_refused_with_the_field_and_stores_nothing(client_with_agency, agency, change, field):
    from ledgerguard.sources import claims as source

    body = claim_body(agency.client_ids[0], request_id="R-BAD-1")
    change(body)
    r = client_with_agency.post("/api/v1/claims", json=body, headers=OPS)
    assert r.status_code == 422, r.text
    assert field in {e["field"] for e in r.json()["errors"]}
    assert not source.request_path(agency, "R-BAD-1").exists()
    state = client_with_agency.app.state.intake
    state.ensure_ready()
    from ledgerguard.register.db import session_scope

    with session_scope(state.engine) as s:
        assert s.query(SignalRecord).count() == 0


def test_a_credential_for_alerts_may_not_enter_documents(client_with_agency, agency):
    r = client_with_agency.post("/api/v1/claims", json=claim_body(agency.client_ids[0]), headers=PROM)
    assert r.status_code == 403


def test_a_vendor_notice_is_stored_and_raised_as_a_vendor_breach(client_with_agency, agency, tmp_path):
    from ledgerguard.catalog.service import load_catalog
    from ledgerguard.response.detection import run_detectors
    from ledgerguard.sources import vendors as source

    vendor = sorted(source.load_vendors(agency))[0]
    body = {"vendor_id": vendor, "received_at": "2026-11-27T09:30:00+08:00", "title": "数据泄露通知",
            "status": "confirmed", "data_kinds": ["name", "id_number", "bank_card"], "scope_confirmed": True,
            "summary": "对象存储配置错误导致工资表外泄"}
    r = client_with_agency.post("/api/v1/vendor-notices", json=body, headers=OPS)
    assert r.status_code == 202, r.text
    [sig] = r.json()["signals"]
    assert (sig["emergency_type"], sig["resource"]) == ("vendor_breach", f"vendor:{vendor}")
    [(path, notice)] = source.read_notices(agency)
    assert notice.vendor_id == vendor and notice.status == "confirmed"
    found = run_detectors(entry=load_catalog().get("vendor_breach"), agency=agency, resource=f"vendor:{vendor}",
                          scratch_dir=tmp_path)
    assert any(f.detector == "vendor.notice" for f in found.findings)

    unknown = client_with_agency.post("/api/v1/vendor-notices", json={**body, "vendor_id": "nobody"}, headers=OPS)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "vendor_id"
