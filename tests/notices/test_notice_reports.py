"""The authorities' notices: the CAC report carries every field catalog/notices/notices.yaml requires
(zh-CN and en), drafted on demand; authorities are filed by hand, and filing meets the obligation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.notices.conftest import drafts, mails, obligation_status, timeline_kinds

pytestmark = pytest.mark.prefect

runner = CliRunner()


def cli(*args):
    from ledgerguard.cli import app

    return runner.invoke(app, ["notices", *args])


def field_values(text: str, labels: list[str]) -> dict[str, str]:
    """Each label's value on its line (``- 报告单位：…``)."""
    out = {}
    for label in labels:
        match = re.search(rf"^- {re.escape(label)}[:：] *(.*)$", text, re.M)
        out[label] = match.group(1).strip() if match else ""
    return out


def cac_draft(runtime, incident: str) -> tuple[dict, str]:
    result = cli("draft", incident, "--kind", "cac_report")
    assert result.exit_code == 0 and "new v1" in result.output, result.output
    [row] = drafts(runtime, incident, kind="cac_report")
    return row, Path(row["path"]).read_text(encoding="utf-8")


def test_the_cac_report_carries_every_required_field_and_is_filed_by_hand(insider):
    from ledgerguard.notices.drafting import load_runtime_policy

    runtime, outcome, sink = insider["runtime"], insider["outcome"], insider["sink"]
    incident = outcome.incident_id
    # 一般 grade: no CAC obligation, so no CAC report unless a person asks for one
    assert not drafts(runtime, incident, kind="cac_report")
    row, text = cac_draft(runtime, incident)

    spec = load_runtime_policy(runtime).kind("cac_report")
    labels = [item.zh for item in spec.contents]
    assert len(labels) == 9
    values = field_values(text, labels)
    assert all(values.values()), {k: v for k, v in values.items() if not v}
    assert values["报告单位"].startswith(runtime.agency.config.name)
    assert "员工账号与数据导出" in values["受影响系统"] and "user:all" in values["受影响系统"]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d \(UTC\+8\)", values["发现时间"])
    assert "网络攻击/数据安全事件" in values["事件类型"] and "内部外泄" in values["事件类型"]
    assert values["事件级别"].startswith("一般") and "一级" in values["事件级别"]
    clients = len(runtime.agency.client_ids)
    assert f"受影响客户 {clients} 家" in values["影响范围"] and "身份证号码" in values["影响范围"]
    assert re.search(r"涉及个人约 \d+ 人", values["影响范围"])
    assert "禁用相关账号" in values["已采取的处置措施"] and "进行中" in values["已采取的处置措施"]
    dp = runtime.contacts.with_role("data_protection")[0]
    assert dp.name in values["联系人"] and dp.email in values["联系人"]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d", values["报告时间"])

    # asked again with nothing changed: the same version (the time of the report is the first draft's)
    again = cli("draft", incident, "--kind", "cac_report")
    assert again.exit_code == 0 and "unchanged v1" in again.output
    assert len(drafts(runtime, incident, kind="cac_report", include_superseded=True)) == 1

    # only the owner or the data-protection lead approves it; then it is filed by hand, not emailed
    manager = runtime.contacts.with_role("manager")[0]
    assert cli("approve", row["id"], "--by", manager.id).exit_code == 1
    before = len(mails(sink))
    sent = cli("approve", row["id"], "--by", dp.id, "--send")
    assert sent.exit_code == 0 and "to be filed by hand" in sent.output and "sent nothing" in sent.output
    assert len(mails(sink)) == before
    import json

    listed = json.loads(cli("list", "--incident", incident, "--json").output)
    [waiting] = [r for r in listed if r["id"] == row["id"]]
    assert waiting["status"] == "approved" and waiting["sent_to"][0]["status"] == "to_file"
    no_ref = cli("filed", row["id"], "--by", dp.id, "--ref", " ")
    assert no_ref.exit_code == 1 and "ref:" in no_ref.output
    filed = cli("filed", row["id"], "--by", dp.id, "--ref", "网信报备 202612-0042")
    assert filed.exit_code == 0, filed.output
    [done] = drafts(runtime, incident, kind="cac_report")
    assert done["status"] == "sent" and done["sent_to"][-1]["ref"] == "网信报备 202612-0042"
    assert {"notice.to_file", "notice.filed"} <= set(timeline_kinds(runtime, incident))

    # the police report fulfils the incident's police_report obligation once filed
    [police] = drafts(runtime, incident, kind="police")
    police_text = Path(police["path"]).read_text(encoding="utf-8")
    assert all(field_values(police_text, ["报案单位", "发现时间", "案件经过", "损失与影响", "已保全证据",
                                          "联系人"]).values())
    assert "保全DLP与认证日志" in police_text
    assert obligation_status(runtime, incident)["police_report"] == "open"
    owner = runtime.contacts.with_role("owner")[0]
    assert cli("approve", police["id"], "--by", owner.id, "--send").exit_code == 0
    assert obligation_status(runtime, incident)["police_report"] == "open"  # approved is not filed
    filed = cli("filed", police["id"], "--by", owner.id, "--ref", "深公网安 2026-118")
    assert filed.exit_code == 0 and "obligation met: police_report" in filed.output
    assert obligation_status(runtime, incident)["police_report"] == "met"


def test_english_notices_carry_the_english_fields(live, monkeypatch):
    from ledgerguard.config import reset_settings
    from ledgerguard.detectors import InjectionContext, get_injector
    from ledgerguard.notices.drafting import load_runtime_policy
    from ledgerguard.runtime import get_runtime, reset_runtime
    from tests.notices.conftest import run_insider

    monkeypatch.setenv("LEDGERGUARD_LANGUAGE", "en")
    reset_settings()
    reset_runtime()
    runtime = get_runtime()
    get_injector("dlp.inject_bulk_export").inject(
        InjectionContext(agency=runtime.agency, resource="user:all", scratch_dir=runtime.settings.scratch_dir))
    incident = run_insider().incident_id

    row, text = cac_draft(runtime, incident)
    assert row["language"] == "en"
    labels = [item.en for item in load_runtime_policy(runtime).kind("cac_report").contents]
    values = field_values(text, labels)
    assert all(values.values()), {k: v for k, v in values.items() if not v}
    assert values["Incident grade"].startswith("General") and "Level 1" in values["Incident grade"]
    assert "ID card numbers" in values["Impact"] and "Disable the accounts involved" in values["Measures taken"]
    assert "报告" not in text and "Cybersecurity incident report" in text.splitlines()[0]
    client = next(r for r in drafts(runtime, incident, kind="client"))
    client_text = Path(client["path"]).read_text(encoding="utf-8")
    assert "What we ask of you" in client_text and "Articles 21 and 59" in client_text
