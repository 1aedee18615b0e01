from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ledgerguard import backups as bk
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.remediation import get_action
from ledgerguard.remediation.base import ActionContext, ActionFailed
from ledgerguard.sources import fileshare as fs

NOW = datetime.now(timezone.utc)
RES = "fileserver:bookkeeping"


def act(agency, action_id, scratch, resource=RES, **params):
    ctx = ActionContext(agency=agency, resource=resource, params=params, now=NOW, scratch_dir=scratch,
                        incident_id="INC-R")
    return get_action(action_id)(ctx)


def inject(agency, injector_id, **kw):
    return get_injector(injector_id).inject(InjectionContext(agency=agency, resource=RES, now=NOW, seed=4), **kw)


def test_isolate_hosts_from_the_detectors(agency, scratch):
    inject(agency, "files.inject_mass_rename", count=600, host="FS02")
    r = act(agency, "host.isolate", scratch)
    assert r.output["isolated"] == ["FS02"]
    assert "FS02" in fs.isolated_hosts(agency)
    again = act(agency, "host.isolate", scratch)
    assert again.output["isolated"] == [] and again.output["already_isolated"] == ["FS02"]
    f = get_detector("files.mass_rename").detect(DetectionContext(agency=agency, resource=RES, now=NOW,
                                                                  scratch_dir=scratch)).finding
    assert f.facts["attacker_active"] is False  # the monitor honours the isolation list


def test_isolate_without_infection_fails(agency, scratch):
    with pytest.raises(ActionFailed, match="no infected host"):
        act(agency, "host.isolate", scratch)


def test_evidence_snapshot_manifest(agency, scratch):
    inject(agency, "files.inject_ransom_note", per_client=1)
    r = act(agency, "evidence.snapshot", scratch, sources=["auth_log", "file_events", "ransom_note"])
    manifest = json.loads((scratch / "INC-R" / "evidence" / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["files"]) == 4  # two logs, two notes
    for item in manifest["files"]:
        assert bk.sha256_file(item["path"]) == item["sha256"]
    again = act(agency, "evidence.snapshot", scratch, sources=["auth_log", "file_events", "ransom_note"])
    assert "0 new file(s)" in again.summary
    with pytest.raises(ActionFailed, match="unknown evidence source"):
        act(agency, "evidence.snapshot", scratch, sources=["nope"])


def test_find_clean_backup_before_the_attack(agency, scratch):
    inject(agency, "files.inject_mass_rename", count=550)
    r = act(agency, "backup.find_clean", scratch)
    newest = bk.newest_good_backup(agency)
    assert r.output["backup_set"] == newest.stamp and r.output["rpo_breached"] is False
    assert (scratch / "INC-R" / "clean-backup.json").is_file()
    # a newest set whose copy is corrupted is skipped for the next older one
    entry = newest.files[0]
    with open(newest.file_path(entry), "r+b") as fh:
        fh.write(b"x" * 16)
    (scratch / "INC-R" / "first-malicious.json").unlink()
    r = act(agency, "backup.find_clean", scratch)
    assert r.output["backup_set"] != newest.stamp and r.output["checked"][0]["mismatches"] == 1
