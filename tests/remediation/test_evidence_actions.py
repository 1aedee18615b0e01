"""evidence.capture: the probe-log window and HTTP results copied with a SHA-256 manifest."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ledgerguard.detectors import InjectionContext, get_injector
from ledgerguard.remediation import ActionContext, ActionFailed, get_action


def actx(agency, scratch, resource, now, **params):
    return ActionContext(agency=agency, resource=resource, params=params, now=now, scratch_dir=scratch,
                         incident_id="INC-9")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_etax_capture_keeps_every_probe_of_the_outage(agency, scratch):
    now = datetime.now(timezone.utc)
    get_injector("etax.inject_outage").inject(InjectionContext(agency=agency, resource="etax:default", now=now),
                                              minutes=60)
    result = get_action("evidence.capture")(actx(agency, scratch, "etax:default", now,
                                                 what=["probe_log", "http_results", "screenshots"]))
    assert result.ok
    folder = Path(result.output["folder"])
    assert folder.is_relative_to(scratch / "evidence" / "etax_default" / "INC-9")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert (folder / "manifest.json.sha256").read_text().split()[0] == sha(folder / "manifest.json")
    for f in manifest["files"]:
        assert sha(folder / f["file"]) == f["sha256"] and (folder / f["file"]).stat().st_size == f["bytes"]
    with open(folder / "probe-log-window.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    failed = [r for r in rows if r["ok"] == "False"]
    assert len(failed) == 2 * 13  # both endpoints, every 5 min over 60 min
    assert any(r["ok"] == "True" for r in rows)  # the last good probes before it, and the controls
    assert [s["what"] for s in manifest["skipped"]] == ["screenshots"]
    http = json.loads((folder / "http-results.json").read_text(encoding="utf-8"))
    assert http["results"] and all(r["source"] == "log" for r in http["results"])


@pytest.mark.parametrize("resource, expected", [
    ("saas:bookkeeping", {"probe-log-window.csv", "http-results.json", "status-bookkeeping.json", "sync-status.csv"}),
    ("office:main", {"alarms-site.jsonl", "presence.csv"}),
    ("vendor:payroll-cloud", {"vendor-register-entry.json"}),
])
def test_capture_for_other_resources(agency, scratch, resource, expected):
    result = get_action("evidence.capture")(actx(agency, scratch, resource, datetime.now(timezone.utc)))
    assert {f["file"] for f in result.output["files"]} == expected


def test_capture_of_unknown_kind_or_portal_fails_clearly(agency, scratch):
    now = datetime.now(timezone.utc)
    with pytest.raises(ActionFailed, match="kind 'ledger'"):
        get_action("evidence.capture")(actx(agency, scratch, "ledger:C0001", now))
    with pytest.raises(ActionFailed, match="atlantis"):
        get_action("evidence.capture")(actx(agency, scratch, "etax:atlantis", now))
    dry = get_action("evidence.capture")(ActionContext(agency=agency, resource="etax:default", scratch_dir=scratch,
                                                       dry_run=True))
    assert dry.output["dry_run"] and not Path(dry.output["folder"]).exists()
    assert not (scratch / "evidence" / "ledger_C0001").exists()
