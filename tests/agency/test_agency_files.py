from __future__ import annotations

import pandas as pd
import pytest
import yaml

from ledgerguard.agency import (
    AgencyDataError,
    Role,
    UnknownClientError,
    is_valid_credit_code,
    load_agency,
)
from ledgerguard.ledgers import ledger_stats


def test_generated_agency_loads_and_every_ledger_balances(agency):
    assert agency.config.timezone == "Asia/Shanghai"
    assert isinstance(agency.clients, pd.DataFrame)
    assert list(agency.clients.client_id) == [f"C{i:04d}" for i in range(1, 6)]
    assert agency.clients.vip.dtype == bool and agency.clients.vip.any()
    for cid in agency.client_ids:
        stats = ledger_stats(agency.ledger_path(cid))
        assert stats.integrity_ok, stats.error
        assert stats.balanced and stats.difference_cents == 0
        assert stats.debit_cents > 0
        assert 30 <= stats.vouchers <= 120


def test_clients_have_valid_credit_codes_and_known_accountants(agency):
    accountants = {p.id for p in agency.contacts.with_role(Role.ACCOUNTANTS)}
    for cid in agency.client_ids:
        c = agency.client(cid)
        assert is_valid_credit_code(c.credit_code)
        assert c["accountant_id"] in accountants
    assert not is_valid_credit_code(agency.client("C0001").credit_code[:-1] + "0") or \
        not is_valid_credit_code(agency.client("C0001").credit_code[:-1] + "1")


def test_contacts_cover_the_roles(agency):
    for role in Role:
        assert agency.contacts.with_role(role), f"nobody has role {role.value}"
    assert all(e.endswith("@agency.example") for e in agency.contacts.management_list)


def test_unknown_client_names_the_file_and_id(agency):
    with pytest.raises(UnknownClientError) as err:
        agency.client("C9999")
    assert "C9999" in str(err.value) and "clients.csv" in str(err.value)
    with pytest.raises(KeyError):
        agency.ledger_path("C9999")


def test_bad_agency_yaml_names_file_and_field(agency):
    data = yaml.safe_load(agency.config_path.read_text(encoding="utf-8"))
    data["rpo_hours"] = -3
    agency.config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(AgencyDataError) as err:
        load_agency(agency.root)
    assert "agency.yaml" in str(err.value) and "rpo_hours" in str(err.value)


def test_bad_credit_code_names_file_line_and_field(agency):
    df = pd.read_csv(agency.clients_path, dtype=str, keep_default_na=False)
    df.loc[1, "credit_code"] = "91330100MA2XXXXXX1"
    df.to_csv(agency.clients_path, index=False)
    with pytest.raises(AgencyDataError) as err:
        load_agency(agency.root)
    msg = str(err.value)
    assert "clients.csv" in msg and "credit_code" in msg and "line 3" in msg


def test_bad_contacts_role_names_file(agency):
    data = yaml.safe_load(agency.contacts_path.read_text(encoding="utf-8"))
    data["people"][0]["roles"] = ["astronaut"]
    agency.contacts_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(AgencyDataError) as err:
        load_agency(agency.root)
    assert "contacts.yaml" in str(err.value) and "roles" in str(err.value)


def test_contacts_with_chat_channels_load_for_the_agency_and_the_router(agency):
    # Regression: the agency had its own, stricter copy of the contacts schema, so a person
    # given `channels:` or a `drill_recipients` list (what routing reads) broke load_agency.
    from ledgerguard.channels.contacts import resolve_recipients

    data = yaml.safe_load(agency.contacts_path.read_text(encoding="utf-8"))
    data["people"][0]["webhook"] = "json://127.0.0.1:9/hook"
    data["people"][0]["channels"] = ["webhook", "email"]
    data["drill_recipients"] = ["drill@agency.example"]
    agency.contacts_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    loaded = load_agency(agency.root)
    person = loaded.contacts.people[0]
    routing = resolve_recipients(contacts=loaded.contacts, roles=[person.roles[0]])
    assert [r.channel for r in routing.recipients if r.person_id == person.id] == ["webhook", "email"]


def test_missing_agency_folder(tmp_path):
    with pytest.raises(AgencyDataError) as err:
        load_agency(tmp_path / "nowhere")
    assert "nowhere" in str(err.value)


def test_filing_tracker_loads(agency):
    f = agency.filings()
    assert set(f.columns) >= {"client_id", "period", "tax", "status", "filed_at"}
    assert set(f.client_id) == set(agency.client_ids)
    assert (f.status == "filed").sum() > len(f) / 2
    assert f.loc[f.status == "filed", "filed_at"].notna().all()


def test_backup_argv_expands_placeholders(agency):
    argv = agency.backup_argv()
    assert argv[1:5] == ["-m", "ledgerguard.backups", "run", "--agency"]
    assert argv[-1] == str(agency.root) and "{" not in " ".join(argv)
