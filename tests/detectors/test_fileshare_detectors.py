from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ledgerguard.agency import AgencyDataError
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.sources import fileshare as fs

FILE_DETECTORS = ["files.mass_rename", "files.ransom_note", "ledger.db_unreadable", "edr.alert"]
RES = "fileserver:bookkeeping"
NOW = datetime.now(timezone.utc)


def detect(agency, detector_id, scratch, resource=RES, **params):
    ctx = DetectionContext(agency=agency, resource=resource, params=params, now=NOW, scratch_dir=scratch)
    return get_detector(detector_id).detect(ctx)


def inject(agency, injector_id, **kwargs):
    ctx = InjectionContext(agency=agency, resource=RES, now=NOW, seed=3)
    injector = get_injector(injector_id)
    return injector, ctx, injector.inject(ctx, **kwargs)


@pytest.mark.parametrize("detector_id", FILE_DETECTORS)
def test_quiet_on_healthy_share(agency, scratch, detector_id):
    result = detect(agency, detector_id, scratch)
    assert result.finding is None, result.finding
    assert result.clear_reason


@pytest.mark.parametrize("detector_id", FILE_DETECTORS)
def test_resource_form(agency, scratch, detector_id):
    with pytest.raises(ValueError, match="fileserver:<share>"):
        detect(agency, detector_id, scratch, resource="share:bookkeeping")


def test_unknown_share_names_the_folder(agency, scratch):
    with pytest.raises(AgencyDataError, match="no share folder 'finance'"):
        detect(agency, "files.mass_rename", scratch, resource="fileserver:finance")


def test_mass_rename_really_renames_and_fires(agency, scratch):
    folder = fs.share_path(agency, "bookkeeping")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    injector, ctx, report = inject(agency, "files.inject_mass_rename", count=600, minutes=8)
    locked = [p for p in folder.rglob("*.locked")]
    assert len(locked) == 600
    # nothing outside the share was touched
    assert all(folder in p.parents for p in locked)
    f = detect(agency, "files.mass_rename", scratch, window_minutes=10, min_files=500).finding
    assert f is not None
    for name in COMMON_FACTS:
        assert name in f.facts
    assert f.facts["files_renamed"] == 600 and f.facts["encrypted_files"] == 600
    assert f.facts["new_extension"] == ".locked"
    assert f.facts["hosts_affected"] == 1 and f.facts["attacker_active"] is True
    assert f.facts["ransomware"] is True and f.facts["pii_tampered"] is True
    assert f.facts["clients_affected"] == len(agency.client_ids)
    assert f.facts["pii_people"] == int(agency.clients["employees"].sum())
    assert f.facts["clean_backup_available"] is True and f.facts["backup_age_hours"] < 24
    json.dumps(f.facts)
    # more files than the window allows: quiet
    assert detect(agency, "files.mass_rename", scratch, window_minutes=10, min_files=601).finding is None
    # a narrower window sees fewer renames
    narrow = detect(agency, "files.mass_rename", scratch, window_minutes=2, min_files=500)
    assert narrow.finding is None and "within 2 min" in narrow.clear_reason
    injector.restore(ctx, report)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()) == before
    assert detect(agency, "files.mass_rename", scratch).finding is None


def test_isolated_host_is_not_an_active_attacker(agency, scratch):
    inject(agency, "files.inject_mass_rename", count=550, minutes=5)
    fs.write_isolated_hosts(agency, {"FS01": {"isolated_at": (NOW - timedelta(hours=1)).isoformat()}})
    f = detect(agency, "files.mass_rename", scratch).finding
    assert f.facts["attacker_active"] is False and f.facts["hosts_isolated"] == ["FS01"]


def test_ransom_note_found_by_scanning(agency, scratch):
    injector, ctx, report = inject(agency, "files.inject_ransom_note", per_client=2)
    f = detect(agency, "files.ransom_note", scratch).finding
    assert f is not None
    assert f.facts["ransom_note"] is True and f.facts["ransom_notes_found"] == 3
    assert any(p.endswith("README_DECRYPT.txt") for p in f.facts["ransom_note_paths"])
    assert f.facts["clients_affected"] == 2
    assert f.evidence[0].data["sha256"]
    injector.restore(ctx, report)
    assert detect(agency, "files.ransom_note", scratch).finding is None


def test_ledger_header_corruption_and_restore(agency, scratch):
    cids = agency.client_ids[:2]
    injector, ctx, report = inject(agency, "ledger.corrupt_header", clients=cids)
    f = detect(agency, "ledger.db_unreadable", scratch).finding
    assert f is not None
    assert f.facts["ledgers_unreadable"] == 2 and sorted(f.facts["unreadable_clients"]) == sorted(cids)
    emp = agency.clients.set_index("client_id")["employees"]
    assert f.facts["pii_people"] == int(emp.loc[cids].sum())
    assert f.facts["agency_role"] == "entrusted" and "bank_card" in f.facts["pii_kinds"]
    injector.restore(ctx, report)
    assert detect(agency, "ledger.db_unreadable", scratch).finding is None


def test_edr_alert(agency, scratch):
    inject(agency, "edr.inject_alert")
    f = detect(agency, "edr.alert", scratch).finding
    assert f is not None and f.facts["ransomware"] is True and f.facts["attacker_active"] is True
    assert f.facts["hosts"] == ["FS01"]


def test_bad_event_line_is_named(agency, scratch):
    log = agency.data_file(*fs.FILE_EVENTS)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write('{"at": "yesterday", "host": "FS01", "user": "x", "share": "bookkeeping", '
                 '"event": "rename", "path": "a", "new_path": "b"}\n')
    n = len(log.read_text(encoding="utf-8").splitlines())
    with pytest.raises(AgencyDataError) as exc:
        detect(agency, "files.mass_rename", scratch)
    assert exc.value.field == "at" and f"line {n}" in str(exc.value)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    with pytest.raises(AgencyDataError, match=f"line {n + 1}: not valid JSON"):
        detect(agency, "files.mass_rename", scratch)
