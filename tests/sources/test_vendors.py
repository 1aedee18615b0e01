"""The vendor source: register, notices, feed and client domains of the sample agency."""

from __future__ import annotations

import pytest

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.sources import vendors as src


def test_sample_register(agency):
    vendors = src.load_vendors(agency)
    assert set(vendors) == {"bookkeeping-saas", "payroll-cloud", "einvoice", "offsite-backup"}
    payroll = vendors["payroll-cloud"]
    assert payroll.data_subjects == "employees" and "id_number" in payroll.pii_kinds
    assert set(payroll.client_ids(agency)) <= set(agency.client_ids) and payroll.client_ids(agency)
    assert vendors["offsite-backup"].pii_kinds == []
    assert src.read_notices(agency) == []
    feed = src.read_feed(agency)
    assert feed and all(e["at"].tzinfo is not None for e in feed)
    domains = src.read_client_domains(agency)
    assert sorted(domains.values()) == sorted(agency.client_ids)


@pytest.mark.parametrize("domain, wanted, ok", [("portal.xinyun-payroll.invalid", "xinyun-payroll.invalid", True),
                                                ("XINYUN-PAYROLL.invalid.", "xinyun-payroll.invalid", True),
                                                ("evil-xinyun-payroll.invalid", "xinyun-payroll.invalid", False)])
def test_domain_matching(domain, wanted, ok):
    assert src.domain_matches(domain, wanted) is ok


def test_register_errors_name_the_field(agency):
    path = src.register_path(agency)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("data_subjects: contacts", "data_subjects: everyone", 1), encoding="utf-8")
    with pytest.raises(AgencyDataError) as err:
        src.load_vendors(agency)
    assert err.value.field == "vendors.2.data_subjects" and "vendors.yaml" in str(err.value)
    path.write_text(text.replace("id: einvoice", "id: payroll-cloud", 1), encoding="utf-8")
    with pytest.raises(AgencyDataError, match="duplicate vendor id"):
        src.load_vendors(agency)
