from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone

import pytest

from ledgerguard import backups as bk
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.ledgers import ledger_stats
from ledgerguard.remediation import ActionContext, ActionFailed, get_action, known_actions

SEQUENCE = ["ledger.freeze", "ledger.restore_to_staging", "ledger.verify_staging", "ledger.swap_in"]


def actx(agency, scratch, client_id, **params):
    return ActionContext(agency=agency, resource=f"ledger:{client_id}", params=params,
                         now=datetime.now(timezone.utc), scratch_dir=scratch, incident_id="INC-42")


def detect(agency, detector_id, client_id, scratch):
    return get_detector(detector_id).detect(DetectionContext(
        agency=agency, resource=f"ledger:{client_id}", now=datetime.now(timezone.utc), scratch_dir=scratch))


def test_registry():
    assert set(SEQUENCE) <= set(known_actions())
    assert {"backup.rerun", "backup.verify_checksums", "backup.test_restore"} <= set(known_actions())
    assert "verify.redetect" not in known_actions()
    with pytest.raises(KeyError) as err:
        get_action("ledger.nope")
    assert "ledger.nope" in str(err.value) and "ledger.freeze" in str(err.value)


def test_full_sequence_after_delete_vouchers(agency, scratch):
    cid = agency.client_ids[0]
    path = agency.ledger_path(cid)
    baseline = bk.newest_good_backup(agency, client_id=cid).file_for(cid)
    get_injector("ledger.delete_vouchers").inject(
        InjectionContext(agency=agency, resource=f"ledger:{cid}", seed=1), count=4)
    broken_sha = bk.sha256_file(path)
    assert detect(agency, "ledger.row_count_drop", cid, scratch).finding is not None

    results = {}
    for action_id in SEQUENCE:
        result = get_action(action_id)(actx(agency, scratch, cid, reason="vouchers deleted"))
        assert result.ok, (action_id, result.summary)
        json.dumps(result.output)  # the register stores it as JSON
        results[action_id] = result
        if action_id == "ledger.freeze":
            assert stat.S_IMODE(path.stat().st_mode) == 0o444
            marker = json.loads(agency.frozen_marker(cid).read_text(encoding="utf-8"))
            assert marker["reason"] == "vouchers deleted" and marker["incident_id"] == "INC-42"
            assert not os.access(path, os.W_OK) or os.geteuid() == 0

    staging = scratch / "INC-42" / "staging" / f"{cid}.sqlite"
    assert results["ledger.restore_to_staging"].output["staging"] == str(staging)
    out = results["ledger.swap_in"].output
    # counts are back to the manifest
    now = ledger_stats(path)
    assert (now.vouchers, now.lines, now.debit_cents, now.credit_cents) == \
        (baseline.vouchers, baseline.lines, baseline.debit_cents, baseline.credit_cents)
    assert out["restored_sha256"] == baseline.sha256 == bk.sha256_file(path)
    # the broken file is kept as evidence
    broken = agency.ledgers_path / os.path.basename(out["broken_path"])
    assert broken.name.startswith(f"{cid}.sqlite.broken-")
    assert bk.sha256_file(broken) == broken_sha == out["broken_sha256"]
    # unfrozen, and the detectors are quiet
    assert not agency.frozen_marker(cid).exists()
    assert os.access(path, os.W_OK) and stat.S_IMODE(path.stat().st_mode) == 0o644
    for detector_id in ("ledger.row_count_drop", "ledger.trial_balance"):
        r = detect(agency, detector_id, cid, scratch)
        assert r.finding is None, r.finding
    # running the last step again is safe
    again = get_action("ledger.swap_in")(actx(agency, scratch, cid))
    assert again.ok and again.output.get("already_done")


def test_sequence_restores_a_deleted_file(agency, scratch):
    cid = agency.client_ids[1]
    get_injector("ledger.delete_file").inject(InjectionContext(agency=agency, resource=f"ledger:{cid}"))
    for action_id in SEQUENCE:
        assert get_action(action_id)(actx(agency, scratch, cid)).ok
    assert ledger_stats(agency.ledger_path(cid)).balanced
    assert detect(agency, "ledger.row_count_drop", cid, scratch).finding is None


def test_freeze_is_idempotent(agency, scratch):
    cid = agency.client_ids[0]
    freeze = get_action("ledger.freeze")
    assert freeze(actx(agency, scratch, cid)).ok
    second = freeze(actx(agency, scratch, cid))
    assert second.ok and second.output["already_frozen"]
    assert get_action("ledger.unfreeze")(actx(agency, scratch, cid)).ok
    assert not agency.frozen_marker(cid).exists()


def test_swap_in_refuses_an_unverified_staging_copy(agency, scratch):
    cid = agency.client_ids[0]
    assert get_action("ledger.restore_to_staging")(actx(agency, scratch, cid)).ok
    with pytest.raises(ActionFailed) as err:
        get_action("ledger.swap_in")(actx(agency, scratch, cid))
    assert "verify_staging" in err.value.reason


def test_verify_staging_catches_a_tampered_copy(agency, scratch):
    cid = agency.client_ids[0]
    out = get_action("ledger.restore_to_staging")(actx(agency, scratch, cid)).output
    import sqlite3
    conn = sqlite3.connect(out["staging"])
    conn.execute("DELETE FROM voucher_lines WHERE id = (SELECT MIN(id) FROM voucher_lines)")
    conn.commit()
    conn.close()
    with pytest.raises(ActionFailed) as err:
        get_action("ledger.verify_staging")(actx(agency, scratch, cid))
    assert "sha256 changed" in err.value.reason


def test_restore_to_staging_fails_on_a_corrupt_backup(agency, scratch):
    cid = agency.client_ids[0]
    # corrupt every set's copy of this client
    for s in bk.list_backup_sets(agency):
        p = s.file_path(s.file_for(cid))
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
    with pytest.raises(ActionFailed) as err:
        get_action("ledger.restore_to_staging")(actx(agency, scratch, cid))
    assert "checksum mismatch" in err.value.reason
