from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.remediation import get_action
from ledgerguard.remediation.base import ActionContext, ActionFailed
from ledgerguard.remediation.identity import read_service_credentials
from ledgerguard.sources import logs as lg

NOW = datetime.now(timezone.utc)


def act(agency, action_id, resource, scratch, incident="INC-1", **params):
    ctx = ActionContext(agency=agency, resource=resource, params=params, now=NOW, scratch_dir=scratch,
                        incident_id=incident)
    return get_action(action_id)(ctx)


def detect(agency, detector_id, resource, scratch):
    return get_detector(detector_id).detect(DetectionContext(agency=agency, resource=resource, now=NOW,
                                                             scratch_dir=scratch))


def inject(agency, injector_id, resource, **kw):
    return get_injector(injector_id).inject(InjectionContext(agency=agency, resource=resource, now=NOW, seed=2), **kw)


def account(agency, user):
    df = lg.read_accounts(agency)
    return df[df["user"] == user].iloc[0]


def test_insider_runbook_disables_revokes_and_quiets(agency, scratch):
    user = agency.clients["accountant_id"].iloc[0]
    inject(agency, "dlp.inject_bulk_export", "user:all", user=user, rows=20000)
    assert detect(agency, "dlp.bulk_export", "user:all", scratch).found
    r = act(agency, "identity.disable_account", "user:all", scratch)
    assert r.ok and r.output["done"] == [user]
    assert bool(account(agency, user)["disabled"]) is True
    again = act(agency, "identity.disable_account", "user:all", scratch)
    assert again.output["done"] == [] and again.output["already_done"] == [user]
    r = act(agency, "identity.revoke_sessions", "user:all", scratch)  # same targets, remembered
    assert r.output["done"] == [user] and account(agency, user)["sessions_revoked_at"]
    # the exports before the revocation are contained: the re-check is quiet
    assert detect(agency, "dlp.bulk_export", "user:all", scratch).finding is None
    audit = agency.data_file("identity_actions", "it/identity-actions.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(a)["action"] for a in audit] == ["identity.disable_account", "identity.revoke_sessions"]


def test_takeover_reset_password_and_hunt(agency, scratch):
    people = list(dict.fromkeys(agency.clients["accountant_id"]))
    victim, other = people[0], people[1]
    inject(agency, "mail.inject_phishing_click", "account:all", users=[victim, other])
    inject(agency, "auth.inject_new_region_login", f"account:{victim}")
    r = act(agency, "identity.reset_password", f"account:{victim}", scratch)
    row = account(agency, victim)
    assert r.output["done"] == [victim] and bool(row["mfa_enrolled"]) is False and row["password_changed_at"]
    hunt = act(agency, "mail.hunt_similar", f"account:{victim}", scratch)
    assert hunt.output["other_clickers"] == [other] and hunt.output["other_victims"] == 1
    # the victim's click is handled, the other clicker's not yet
    f = detect(agency, "mail.click_logs", "account:all", scratch).finding
    assert f is not None and f.facts["users"] == [other]


def test_unknown_user_and_nothing_implicated(agency, scratch):
    with pytest.raises(ActionFailed, match="nobody|not in"):
        act(agency, "identity.disable_account", "user:ghost", scratch)
    with pytest.raises(ActionFailed, match="no account is implicated"):
        act(agency, "identity.revoke_sessions", "account:all", scratch)
    with pytest.raises(ValueError, match="user:<staff_id>"):
        act(agency, "identity.revoke_sessions", "ledger:C0001", scratch)


def test_dry_run_changes_nothing(agency, scratch):
    user = agency.clients["accountant_id"].iloc[0]
    path = agency.data_file(*lg.ACCOUNTS)
    before = path.read_bytes()
    ctx = ActionContext(agency=agency, resource=f"user:{user}", now=NOW, scratch_dir=scratch, dry_run=True)
    r = get_action("identity.disable_account")(ctx)
    assert r.ok and r.output["dry_run"] and path.read_bytes() == before


def test_credential_inventory_snapshot(agency, scratch):
    cid = agency.client_ids[0]
    get_injector("credential.inject_expiring").inject(
        InjectionContext(agency=agency, resource=f"credential:{cid}", now=NOW), days=3)
    r = act(agency, "credential.inventory", "credential:all", scratch)
    assert r.output["by_status"].get("expired", 0) == 0
    assert any(a["client_id"] == cid for a in r.output["attention"])
    assert (scratch / "INC-1" / "credential-inventory.csv").is_file()


def test_rotate_vendor_credentials(agency, scratch):
    from ledgerguard.sources import vendors as vd

    vendors = vd.load_vendors(agency)
    vid = next(v for v, info in vendors.items() if info.credentials)
    r = act(agency, "credentials.rotate", f"vendor:{vid}", scratch, scope="vendor")
    assert r.output["rotated"]
    df = read_service_credentials(agency)
    row = df[df["vendor_id"] == vid].iloc[0]
    assert row["rotated_at"] and row["secret_ref"].endswith("@INC-1")
    again = act(agency, "credentials.rotate", f"vendor:{vid}", scratch)
    assert again.output["rotated"] == [] and again.output["already_done"]
    r = act(agency, "credentials.rotate", "fileserver:bookkeeping", scratch, systems=["vpn"])
    assert r.output["rotated"] == ["vpn-psk"]
