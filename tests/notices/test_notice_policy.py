"""catalog/notices/notices.yaml as data: validated with errors naming the field, checked by
`ledgerguard check`, and read to decide which notices an incident needs."""

from __future__ import annotations

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from ledgerguard.config import PROJECT_ROOT
from ledgerguard.notices.service import NOTICES_FILE, check_policy, load_policy, missing_contents, needed_notices


@pytest.fixture(scope="module")
def catalog():
    from ledgerguard.catalog.service import load_catalog

    return load_catalog(PROJECT_ROOT / "catalog")


@pytest.fixture(scope="module")
def policy():
    return load_policy(PROJECT_ROOT / "catalog" / NOTICES_FILE)


def test_the_bundled_notices_file_is_sound_against_the_catalog_and_templates(catalog):
    assert check_policy(PROJECT_ROOT / "catalog" / NOTICES_FILE, catalog=catalog,
                        templates_dir=PROJECT_ROOT / "templates") == []


def test_bad_input_is_named_by_field(tmp_path, catalog):
    data = yaml.safe_load((PROJECT_ROOT / "catalog" / NOTICES_FILE).read_text(encoding="utf-8"))
    data["kinds"]["cac_report"]["approvers"] = ["owner", "ceo"]
    data["kinds"]["police"]["fulfils"] = ["police_reprot"]
    data["kinds"]["client"]["delivery"] = "fax"
    data["kinds"]["pipl57"]["template"] = "notice_missing"
    path = tmp_path / "notices.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    problems = dict(check_policy(path, catalog=catalog))
    assert "unknown role(s) ceo" in problems["kinds.cac_report.approvers"]
    assert "kinds.client.delivery" in problems
    with pytest.raises(ValueError, match="kinds.cac_report.approvers"):
        load_policy(path)

    data["kinds"]["cac_report"]["approvers"] = ["owner"]
    data["kinds"]["client"]["delivery"] = "email"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    problems = dict(check_policy(path, catalog=catalog, templates_dir=PROJECT_ROOT / "templates"))
    assert "unknown obligation 'police_reprot'" in problems["kinds.police.fulfils.0"]
    assert "templates/zh-CN/notice_missing" in problems["kinds.pipl57.template"]


def test_ledgerguard_check_refuses_a_broken_notices_file(tmp_path):
    from ledgerguard.cli import app

    catalog = tmp_path / "catalog"
    shutil.copytree(PROJECT_ROOT / "catalog", catalog)
    path = catalog / NOTICES_FILE
    path.write_text(path.read_text(encoding="utf-8").replace("    delivery: by_hand\n", "    delivery: carrier_pigeon\n",
                                                             1), encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "--catalog", str(catalog)])
    assert result.exit_code == 1
    assert "notices/notices.yaml" in result.output and "kinds.pipl57.delivery" in result.output


def _incident(level, clients=(), resource="ledger:C0001"):
    return {"id": "x", "level": level, "affected_clients": list(clients), "resource": resource}


def test_which_notices_an_incident_needs(catalog, policy):
    ledger = catalog.get("ledger_loss")     # clients are told from 二级; PIPL only when PI is involved
    assert needed_notices(policy=policy, entry=ledger, incident=_incident(4, ["C0001"]), obligations=[]) == []
    level2 = needed_notices(policy=policy, entry=ledger, incident=_incident(2, ["C0001", "C0002"]), obligations=[])
    assert [(n.kind, n.audience, n.because) for n in level2] == [("client", "C0001", "routing"),
                                                                  ("client", "C0002", "routing")]
    obligations = [{"obligation_id": o} for o in ("pipl_57", "cac_report_4h", "police_report")]
    found = {(n.kind, n.audience, n.because)
             for n in needed_notices(policy=policy, entry=ledger, incident=_incident(4), obligations=obligations)}
    assert found == {("pipl57", "individuals", "pipl_57"), ("cac_report", "cac", "cac_report_4h"),
                     ("police", "police", "police_report")}
    # the entrusted processor informs its clients whatever the routing says
    entrusted = needed_notices(policy=policy, entry=ledger, incident=_incident(4, ["C0003"]),
                               obligations=[{"obligation_id": "pipl_57_entrusted"}])
    assert {(n.kind, n.audience) for n in entrusted} == {("pipl57", "individuals"), ("client", "C0003")}
    # a type whose templates.client is null drafts no client notice
    backup = catalog.get("backup_failure")
    assert backup.templates.client is None
    assert needed_notices(policy=policy, entry=backup, incident=_incident(1, ["C0001"]),
                          obligations=[{"obligation_id": "pipl_57_entrusted"}]) == []


def test_a_field_without_a_value_is_missing(policy):
    spec = policy.kind("cac_report")
    full = "\n".join(f"- {item.zh}：x" for item in spec.contents)
    assert missing_contents(kind=spec, language="zh-CN", text=full) == []
    assert missing_contents(kind=spec, language="zh-CN", text=full.replace("- 联系人：x", "- 联系人：")) == ["联系人"]
    assert missing_contents(kind=spec, language="en", text=full) == [item.en for item in spec.contents]


def test_a_rejection_needs_a_reason_and_an_id_is_hex():
    from pydantic import ValidationError

    from ledgerguard.notices.models import NoticeDecision

    with pytest.raises(ValidationError, match="reason"):
        NoticeDecision(notice_id="abcdef12", decision="reject", by="someone")
    with pytest.raises(ValidationError, match="notice_id"):
        NoticeDecision(notice_id="../../etc", decision="approve", by="someone")
