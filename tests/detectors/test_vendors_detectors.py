"""Vendor-breach detectors on the vendor register, notices and the threat-intel feed."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.catalog import load_catalog
from ledgerguard.classification.service import classify
from ledgerguard.config import PROJECT_ROOT
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.models import Level, RegulatoryGrade
from ledgerguard.response.detection import run_detectors
from ledgerguard.sources import vendors as src

DETECTORS = ["vendor.notice", "threatintel.feed"]
VENDORS = ["bookkeeping-saas", "payroll-cloud", "einvoice", "offsite-backup"]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(PROJECT_ROOT / "catalog")


def detect(agency, detector_id, resource, scratch, now=None, **params):
    return get_detector(detector_id).detect(DetectionContext(agency=agency, resource=resource, params=params,
                                                             now=now or datetime.now(timezone.utc),
                                                             scratch_dir=scratch))


def inject(agency, injector_id, resource, now, **kw):
    ctx = InjectionContext(agency=agency, resource=resource, now=now)
    return get_injector(injector_id).inject(ctx, **kw), ctx


@pytest.mark.parametrize("vendor_id", VENDORS)
@pytest.mark.parametrize("detector_id", DETECTORS)
def test_quiet_on_healthy_agency(agency, scratch, detector_id, vendor_id):
    r = detect(agency, detector_id, f"vendor:{vendor_id}", scratch)
    assert r.finding is None and vendor_id in r.clear_reason


@pytest.mark.parametrize("detector_id", DETECTORS)
def test_bad_resource_and_unknown_vendor(agency, scratch, detector_id):
    with pytest.raises(ValueError, match="vendor:<name>"):
        detect(agency, detector_id, "payroll-cloud", scratch)
    with pytest.raises(AgencyDataError, match="unknown vendor 'acme'"):
        detect(agency, detector_id, "vendor:acme", scratch)


def test_payroll_notice_is_an_entrusted_pii_leak(agency, scratch, catalog):
    now = datetime.now(timezone.utc)
    v = src.vendor(agency, "payroll-cloud")
    report, ctx = inject(agency, "vendor.inject_notice", "vendor:payroll-cloud", now, clients=None)
    f = detect(agency, "vendor.notice", "vendor:payroll-cloud", scratch, now=now).finding
    assert f is not None
    for name in COMMON_FACTS:
        assert name in f.facts
    clients = v.client_ids(agency)
    assert f.facts["affected_clients"] == clients and f.facts["clients_affected"] == len(clients)
    people = sum(agency.client(c).employees for c in clients)
    assert f.facts["pii_people"] == people and f.facts["pii_people_leaked"] == people
    assert f.facts["pii_leaked"] is True and f.facts["agency_role"] == "entrusted"
    assert set(f.facts["pii_kinds"]) == {"name", "id_number", "bank_card", "salary", "phone"}
    assert "vendor_reporting_duty" not in f.facts
    assert all("*" in c["phone"] for c in f.facts["vendor_contacts"])  # contacts' phones are masked
    json.dumps(f.facts)
    entry = catalog.get("vendor_breach")
    a = classify(entry=entry, rubric=catalog.rubric, facts=f.facts, detected_at=now, calendar=catalog.calendar)
    assert a.level == Level.ONE and a.regulatory_grade == RegulatoryGrade.GENERAL
    ids = {o.id for o in a.obligations}
    assert {"pipl_57_entrusted", "supervise_processor"} <= ids
    assert not ids & {"pipl_57", "vendor_cac_report", "cac_report_4h"}
    get_injector("vendor.inject_notice").restore(ctx, report)
    assert detect(agency, "vendor.notice", "vendor:payroll-cloud", scratch, now=now).finding is None


def test_a_million_people_at_the_vendor_is_its_reporting_duty_not_ours(agency, scratch, catalog):
    now = datetime.now(timezone.utc)
    inject(agency, "vendor.inject_notice", "vendor:payroll-cloud", now, clients=2, persons_affected=2_500_000,
           status="suspected", scope_confirmed=False)
    f = detect(agency, "vendor.notice", "vendor:payroll-cloud", scratch, now=now).finding
    assert f.facts["clients_affected"] == 2 and f.facts["pii_leak_suspected"] is True and not f.facts["pii_leaked"]
    assert f.facts["vendor_reporting_duty"] is True and f.facts["scope_confirmed"] is False
    a = classify(entry=catalog.get("vendor_breach"), rubric=catalog.rubric, facts=f.facts, detected_at=now,
                 calendar=catalog.calendar)
    ids = {o.id for o in a.obligations}
    assert "vendor_cac_report" in ids and "cac_report_4h" not in ids
    assert a.regulatory_grade == RegulatoryGrade.GENERAL
    assert "scope_unknown" in {line.rule for line in a.fired}


def test_backup_vendor_without_personal_data_is_no_pii_leak(agency, scratch):
    now = datetime.now(timezone.utc)
    inject(agency, "vendor.inject_notice", "vendor:offsite-backup", now)
    f = detect(agency, "vendor.notice", "vendor:offsite-backup", scratch, now=now).finding
    assert f is not None and f.facts["pii_leaked"] is False and f.facts["pii_kinds"] == []


def test_threat_intel_on_vendor_domain_fires(agency, scratch, catalog):
    now = datetime.now(timezone.utc)
    report, ctx = inject(agency, "threatintel.inject_entry", "vendor:einvoice", now, type="credential_leak")
    f = detect(agency, "threatintel.feed", "vendor:einvoice", scratch, now=now).finding
    assert f is not None and f.facts["vendor_domain_hits"] == 1 and f.facts["credentials_exposed"] is True
    assert f.facts["clients_affected"] == len(agency.client_ids) and f.facts["agency_role"] == "handler"
    assert f.facts["pii_leak_suspected"] is True
    # other vendors are not named by it
    assert detect(agency, "threatintel.feed", "vendor:payroll-cloud", scratch, now=now).finding is None
    detection = run_detectors(entry=catalog.get("vendor_breach"), agency=agency, resource="vendor:einvoice",
                              scratch_dir=scratch, now=now)
    assert [x.detector for x in detection.findings] == ["threatintel.feed"]
    get_injector("threatintel.inject_entry").restore(ctx, report)
    assert detect(agency, "threatintel.feed", "vendor:einvoice", scratch, now=now).finding is None


def test_threat_intel_on_a_client_domain_names_that_client(agency, scratch):
    now = datetime.now(timezone.utc)
    v = src.vendor(agency, "payroll-cloud")
    cid = v.client_ids(agency)[0]
    src.append_feed(agency, [{"at": now.isoformat(), "source": "cert", "type": "breach",
                              "domains": [f"mail.{cid.lower()}.clients.invalid"], "title": "mailbox dump",
                              "data_kinds": ["email"]}])
    f = detect(agency, "threatintel.feed", "vendor:payroll-cloud", scratch, now=now).finding
    assert f is not None and f.facts["affected_clients"] == [cid] and f.facts["client_domain_hits"] == 1
    assert detect(agency, "threatintel.feed", "vendor:payroll-cloud", scratch, now=now,
                  match=["vendor_domains"]).finding is None


def test_bad_notice_and_feed_name_the_file(agency, scratch):
    src.write_notice(agency, "bad", {"vendor_id": "payroll-cloud", "received_at": "yesterday"})
    with pytest.raises(AgencyDataError, match="bad.json") as err:
        detect(agency, "vendor.notice", "vendor:payroll-cloud", scratch)
    assert err.value.field == "received_at"
    with open(src.feed_path(agency), "a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    with pytest.raises(AgencyDataError, match=r"threat-intel.jsonl.*line 5"):
        detect(agency, "threatintel.feed", "vendor:payroll-cloud", scratch)


def test_register_with_unknown_client_names_the_field(agency, scratch):
    path = src.register_path(agency)
    path.write_text(path.read_text(encoding="utf-8").replace("clients: all", "clients: [C9999]", 1), encoding="utf-8")
    with pytest.raises(AgencyDataError, match="C9999") as err:
        detect(agency, "vendor.notice", "vendor:payroll-cloud", scratch)
    assert err.value.field == "vendors.0.clients"
