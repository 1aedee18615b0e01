from __future__ import annotations

import pandas as pd
import pytest

from ledgerguard.sources import fileshare as fs


def test_events_typed_and_isolation_honoured(agency):
    ev = fs.read_events(agency, share="bookkeeping")
    assert len(ev) > 0 and str(ev["at"].dt.tz) == "UTC" and not ev["isolated"].any()
    host = ev["host"].iloc[0]
    fs.write_isolated_hosts(agency, {host: {"isolated_at": ev["at"].iloc[0].isoformat()}})
    ev = fs.read_events(agency, share="bookkeeping")
    assert ev.loc[ev["isolated"], "host"].unique().tolist() == [host]


def test_extension_and_client_of_path():
    paths = pd.Series(["C0001/报表/a.xlsx.locked", "x/readme", "C0002/b.PDF", "misc/C12/c.txt"])
    assert fs.extension(paths).tolist() == [".locked", "", ".pdf", ".txt"]
    assert fs.client_of_path(paths).tolist() == ["C0001", "", "C0002", ""]


def test_ledger_headers(agency):
    heads = fs.ledger_headers(agency)
    assert len(heads) == len(agency.client_ids) and all(h.ok for h in heads)


def test_scan_ransom_notes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme_decrypt.TXT").write_text("x")
    (tmp_path / "b.txt").write_text("x")
    assert [p.name for p in fs.scan_ransom_notes(tmp_path, ["README_DECRYPT*"])] == ["readme_decrypt.TXT"]


def test_share_outside_root_refused(agency):
    with pytest.raises(ValueError, match="not a folder under"):
        fs.share_path(agency, "../ledgers")
    with pytest.raises(ValueError, match="fileserver:<share>"):
        fs.parse_share("fileserver:")
