from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
import pytest

from ledgerguard.agency import AgencyDataError
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.sources import logs as lg

LOG_DETECTORS = ["dlp.bulk_export", "dlp.usb_cloud_upload", "auth.after_resignation",
                 "auth.new_device_login", "auth.mfa_failures", "mail.click_logs"]
NOW = datetime.now(timezone.utc)


def detect(agency, detector_id, resource, scratch, **params):
    ctx = DetectionContext(agency=agency, resource=resource, params=params, now=NOW, scratch_dir=scratch)
    return get_detector(detector_id).detect(ctx)


def inject(agency, injector_id, resource="user:all", **kwargs):
    ctx = InjectionContext(agency=agency, resource=resource, now=NOW, seed=5)
    return get_injector(injector_id), ctx, get_injector(injector_id).inject(ctx, **kwargs)


def accountant(agency):
    return agency.clients["accountant_id"].iloc[0]


@pytest.mark.parametrize("detector_id", LOG_DETECTORS)
@pytest.mark.parametrize("resource", ["user:all", "account:all"])
def test_quiet_on_healthy_agency(agency, scratch, detector_id, resource):
    result = detect(agency, detector_id, resource, scratch)
    assert result.finding is None, result.finding
    assert result.clear_reason


@pytest.mark.parametrize("detector_id", LOG_DETECTORS)
def test_bad_resource_is_value_error(agency, scratch, detector_id):
    with pytest.raises(ValueError, match="user:<staff_id>"):
        detect(agency, detector_id, "ledger:C0001", scratch)


def test_bulk_export_fires_with_pii_facts(agency, scratch):
    user = accountant(agency)
    clients = agency.client_ids[:4]
    from datetime import timedelta

    old = lg.read_log(agency, "dlp_log", since=NOW - timedelta(hours=24), until=NOW)
    old = old[(old["user"] == user) & old["action"].isin(["export", "download"])]
    _, _, report = inject(agency, "dlp.inject_bulk_export", f"user:{user}", rows=30000, clients=clients)
    f = detect(agency, "dlp.bulk_export", "user:all", scratch, min_rows=5000).finding
    assert f is not None
    for name in COMMON_FACTS:
        assert name in f.facts
    assert f.facts["rows_exported"] == 30000 + int(old["rows"].sum())
    assert f.facts["users"] == [user]
    everything = set(clients) | set(lg.split_list(old["client_ids"]))
    assert sorted(f.facts["affected_clients"]) == sorted(everything)
    assert f.facts["clients_affected"] == len(everything)
    emp = agency.clients.set_index("client_id")["employees"]
    payroll = old[old["data_kinds"].str.contains("payroll")]
    assert f.facts["pii_people"] == int(emp.loc[sorted(set(clients) | set(payroll["client_ids"]))].sum())
    assert f.facts["sensitive_pii"] is True
    assert {"id_number", "bank_card", "salary"} <= set(f.facts["pii_kinds"])
    assert f.facts["pii_leak_suspected"] is True and f.facts["pii_leaked"] is False
    assert f.facts["agency_role"] == "entrusted"
    assert f.facts["employee_resigned"] is False
    assert f.facts["vip"] is any(agency.is_vip(c) for c in everything)
    json.dumps(f.facts)
    # A threshold above the export keeps it quiet, and another user's resource too.
    assert detect(agency, "dlp.bulk_export", "user:all", scratch,
                  min_rows=f.facts["rows_exported"] + 1).finding is None
    other = next(p for p in lg.read_staff(agency)["staff_id"] if p != user)
    assert detect(agency, "dlp.bulk_export", f"user:{other}", scratch).finding is None
    assert detect(agency, "dlp.bulk_export", f"user:{user}", scratch).finding is not None


def test_bulk_export_restore_truncates(agency, scratch):
    path = agency.data_file(*lg.DLP_LOG)
    before = path.read_bytes()
    injector, ctx, report = inject(agency, "dlp.inject_bulk_export")
    assert path.read_bytes() != before
    injector.restore(ctx, report)
    assert path.read_bytes() == before
    assert detect(agency, "dlp.bulk_export", "user:all", scratch).finding is None


def test_usb_upload_is_a_leak(agency, scratch):
    _, _, report = inject(agency, "dlp.inject_usb_upload", rows=1200, clients=2)
    f = detect(agency, "dlp.usb_cloud_upload", "user:all", scratch).finding
    assert f is not None
    assert f.facts["pii_leaked"] is True and f.facts["pii_people_leaked"] == f.facts["pii_people"]
    assert f.facts["destinations"] == ["USB:Kingston-DT-64G"]
    assert f.facts["clients_affected"] == 2
    # bank cards of ≥ 50 people: 情节严重 under the SPC/SPP interpretation Art. 5
    assert f.facts["suspected_crime"] is (f.facts["pii_people"] >= 50)
    # an allowed destination is not a finding
    assert detect(agency, "dlp.usb_cloud_upload", "user:all", scratch,
                  allowed_destinations=["USB:Kingston-DT-64G"]).finding is None


def test_after_resignation_fires_and_carries_exports(agency, scratch):
    user = accountant(agency)
    inject(agency, "auth.inject_after_resignation", f"user:{user}", days_ago=3)
    inject(agency, "dlp.inject_bulk_export", f"user:{user}", rows=9000, clients=3, minutes_ago=5)
    f = detect(agency, "auth.after_resignation", "user:all", scratch).finding
    assert f is not None
    assert f.facts["employee_resigned"] is True and f.facts["resigned_users"] == [user]
    assert f.facts["logins_after_last_day"] >= 1
    assert f.facts["rows_exported"] >= 9000 and f.facts["sensitive_pii"] is True
    # the bulk-export finding now knows the exporter has left
    g = detect(agency, "dlp.bulk_export", "user:all", scratch).finding
    assert g.facts["employee_resigned"] is True


def test_new_region_login(agency, scratch):
    user = accountant(agency)
    inject(agency, "auth.inject_new_region_login", f"account:{user}", export_rows=400, clients=2)
    f = detect(agency, "auth.new_device_login", f"account:{user}", scratch).finding
    assert f is not None
    assert f.facts["new_device"] and f.facts["new_region"]
    assert f.facts["new_regions"] == ["境外-美国"]
    assert f.facts["pii_accessed"] is True
    assert f.facts["clients_affected"] == 2
    assert f.facts["attacker_active"] is True
    assert f.facts["clients_exposed"] == len(agency.clients[agency.clients["accountant_id"] == user])
    assert detect(agency, "auth.new_device_login", "account:all", scratch).finding is not None
    other = next(p for p in agency.clients["accountant_id"] if p != user)
    assert detect(agency, "auth.new_device_login", f"account:{other}", scratch).finding is None


def test_mfa_burst(agency, scratch):
    user = accountant(agency)
    inject(agency, "auth.inject_mfa_burst", f"account:{user}", count=6, approve_after=True)
    f = detect(agency, "auth.mfa_failures", "account:all", scratch, min_failures=5, window_minutes=15).finding
    assert f is not None
    assert f.facts["users"] == [user] and f.facts["mfa_failures"] >= 6
    assert f.facts["mfa_passed_after_burst"] is True
    assert detect(agency, "auth.mfa_failures", "account:all", scratch, min_failures=20).finding is None


def test_phishing_click_counts_other_victims(agency, scratch):
    people = list(dict.fromkeys(agency.clients["accountant_id"]))
    owner = next(p for p in lg.read_accounts(agency).itertuples() if p.privileged).user
    users = [people[0], owner]
    inject(agency, "mail.inject_phishing_click", users=users)
    f = detect(agency, "mail.click_logs", f"account:{people[0]}", scratch).finding
    assert f is not None
    assert f.facts["other_victims"] == 1 and f.facts["other_victim_users"] == [owner]
    assert f.facts["account_privileged"] is True


def test_jsonl_log_and_data_files_override(agency, scratch):
    from ledgerguard.agency.service import save_agency_config

    csv_path = agency.data_file(*lg.DLP_LOG)
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    jsonl = agency.root / "logs" / "dlp.jsonl"
    df.to_json(jsonl, orient="records", lines=True, force_ascii=False)
    agency.config = agency.config.model_copy(update={"data_files": {"dlp_log": "logs/dlp.jsonl"}})
    save_agency_config(agency.root, agency.config)
    assert detect(agency, "dlp.bulk_export", "user:all", scratch).finding is None
    lines = len(jsonl.read_text(encoding="utf-8").splitlines())
    inject(agency, "dlp.inject_bulk_export", rows=7000, clients=2)
    assert len(jsonl.read_text(encoding="utf-8").splitlines()) == lines + 2  # appended as JSON lines
    f = detect(agency, "dlp.bulk_export", "user:all", scratch).finding
    assert f is not None and f.facts["rows_exported"] >= 7000


def test_bad_log_names_file_line_and_column(agency, scratch):
    path = agency.data_file(*lg.DLP_LOG)
    lines = path.read_text(encoding="utf-8").splitlines()
    cols = lines[0].split(",")
    bad = lines[3].split(",")
    bad[cols.index("rows")] = "lots"
    lines[3] = ",".join(bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AgencyDataError) as exc:
        detect(agency, "dlp.bulk_export", "user:all", scratch)
    assert exc.value.field == "rows" and "line 4" in str(exc.value) and str(path) in str(exc.value)


def test_missing_column_and_file(agency, scratch):
    path = agency.data_file(*lg.AUTH_LOG)
    df = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=["device_id"])
    df.to_csv(path, index=False)
    with pytest.raises(AgencyDataError) as exc:
        detect(agency, "auth.new_device_login", "account:all", scratch)
    assert exc.value.field == "device_id"
    path.unlink()
    with pytest.raises(AgencyDataError, match="file not found"):
        detect(agency, "auth.mfa_failures", "account:all", scratch)


def _graded(agency, scratch, type_id, resource):
    from ledgerguard.catalog import load_catalog
    from ledgerguard.classification.service import classify
    from ledgerguard.config import PROJECT_ROOT
    from ledgerguard.response.detection import run_detectors

    catalog = load_catalog(PROJECT_ROOT / "catalog")
    entry = catalog.get(type_id)
    detection = run_detectors(entry=entry, agency=agency, resource=resource, scratch_dir=scratch, now=NOW)
    a = classify(entry=entry, rubric=catalog.rubric, facts=detection.facts, detected_at=NOW,
                 calendar=catalog.calendar, language="en")
    return detection, a, {line.rule for line in a.fired}, {o.id for o in a.obligations}


def test_leaver_bulk_export_graded_from_the_logs(agency, scratch):
    # The catalog's insider scenario, planted: a leaver exports 30,000 payroll rows at night.
    user = accountant(agency)
    inject(agency, "auth.inject_after_resignation", f"user:{user}")
    inject(agency, "dlp.inject_bulk_export", f"user:{user}", rows=30000, clients=5, minutes_ago=3)
    detection, a, rules, obligations = _graded(agency, scratch, "insider_exfiltration", "user:all")
    assert {"dlp.bulk_export", "auth.after_resignation"} <= {f.detector for f in detection.findings}
    assert a.level.value == 1
    assert {"sensitive_pii", "large_volume", "leaver_still_active", "pii_leak_suspected"} <= rules
    assert {"confidentiality", "pipl_57_entrusted"} <= obligations
    assert "cac_report_4h" not in obligations


def test_phished_mailbox_graded(agency, scratch):
    user = accountant(agency)
    inject(agency, "auth.inject_new_region_login", f"account:{user}")
    detection, a, rules, obligations = _graded(agency, scratch, "account_takeover", f"account:{user}")
    assert detection.facts["attacker_active"] is True and detection.facts["pii_accessed"] is False
    assert "attacker_active" in rules and "pii_accessed" not in rules
    assert a.level.value == (2 if detection.facts["account_privileged"] else 3)


def test_unknown_user_is_a_clear_error(agency, scratch):
    with pytest.raises(ValueError, match="unknown user 'ghost'"):
        detect(agency, "dlp.bulk_export", "user:ghost", scratch)
