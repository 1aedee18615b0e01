"""facility.check_status and saas.export on the sample agency."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ledgerguard.detectors import InjectionContext, get_injector
from ledgerguard.ledgers import ledger_stats
from ledgerguard.remediation import ActionContext, ActionFailed, get_action


def actx(agency, scratch, resource, now=None, **params):
    return ActionContext(agency=agency, resource=resource, params=params, now=now or datetime.now(timezone.utc),
                         scratch_dir=scratch, incident_id="INC-3")


def test_check_status_all_normal_then_power_cut(agency, scratch):
    now = datetime.now(timezone.utc)
    ok = get_action("facility.check_status")(actx(agency, scratch, "office:main", now))
    assert ok.ok and ok.output["problems"] == [] and "all normal" in ok.summary
    assert {r["target"] for r in ok.output["status"]["systems"]["results"]} == {"agency-fileserver", "agency-vpn"}
    get_injector("facility.inject_power_cut").inject(InjectionContext(agency=agency, resource="office:main", now=now),
                                                     minutes=20)
    bad = get_action("facility.check_status")(actx(agency, scratch, "office:main", now))
    assert bad.output["status"]["power"]["ok"] is False and bad.output["status"]["power"]["outage_minutes"] == 20
    assert bad.output["status"]["network"]["ok"] is True and "power" in bad.summary


def test_check_status_unknown_site_fails(agency, scratch):
    with pytest.raises(ActionFailed, match="unknown site"):
        get_action("facility.check_status")(actx(agency, scratch, "office:annex"))


def test_saas_export_copies_every_client_ledger_with_checksums(agency, scratch):
    result = get_action("saas.export")(actx(agency, scratch, "saas:bookkeeping"))
    assert result.ok and result.output["exported"] == len(agency.client_ids) and not result.output["missing"]
    folder = Path(result.output["folder"])
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert (folder / "newest-backup-manifest.json").is_file() and manifest["newest_good_backup"]
    for f in manifest["files"]:
        copy = folder / f["file"]
        assert ledger_stats(copy).vouchers == ledger_stats(agency.ledger_path(f["client_id"])).vouchers == f["vouchers"]
        assert f["balanced"] is True
        sqlite3.connect(copy).execute("PRAGMA quick_check").fetchone()


def test_saas_export_of_one_client_and_unknown_service(agency, scratch):
    cid = agency.client_ids[0]
    one = get_action("saas.export")(actx(agency, scratch, "saas:bookkeeping", clients=[cid]))
    assert one.output["exported"] == 1
    with pytest.raises(ActionFailed, match="no saas probe target for service 'erp'"):
        get_action("saas.export")(actx(agency, scratch, "saas:erp"))
