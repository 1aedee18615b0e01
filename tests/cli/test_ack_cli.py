"""`ledgerguard ack INCIDENT --by PERSON`: acknowledge from the command line; `incidents` shows who and MTTA."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from ledgerguard import cli
from ledgerguard.cli import app
from ledgerguard.models import IncidentStatus, Signal
from ledgerguard.register import service as register
from ledgerguard.register.models import Incident

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def people(agency_dir, monkeypatch) -> list[str]:
    monkeypatch.setattr(cli.console, "width", 200)
    monkeypatch.setattr(cli.err, "width", 200)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # no Prefect here: the escalation stops by itself
    return [p["id"] for p in yaml.safe_load((agency_dir / "contacts.yaml").read_text(encoding="utf-8"))["people"]]


def _open(resource: str = "ledger:C0001") -> str:
    from ledgerguard.runtime import get_runtime

    with get_runtime().session() as s:
        incident, _ = register.open_or_join_incident(
            db_session=s, title="凭证数骤降", signal=Signal(source="test", emergency_type="ledger_loss", resource=resource))
        return incident.id


def _incident(incident_id: str):
    from ledgerguard.runtime import get_runtime

    with get_runtime().session() as s:
        incident = s.get(Incident, incident_id)
        return incident, [(e.kind, e.data) for e in register.get_timeline(db_session=s, incident_id=incident_id)]


def test_ack_by_id_prefix_records_who_how_and_when(people, lg_home):
    incident_id = _open()
    result = runner.invoke(app, ["ack", incident_id[:8], "--by", people[0], "--note", "我来处理",
                                 "--home", str(lg_home)])
    assert result.exit_code == 0, result.output
    output = flat(result.output)
    assert "已确认接手" in output and incident_id in output and f"{people[0]} (cli)" in output
    assert "MTTA" in output and "分钟" in output
    assert "升级将在下一轮自行停止" in output  # no Prefect API reachable
    incident, timeline = _incident(incident_id)
    assert incident.status == "acknowledged" and incident.acknowledged_by == people[0]
    assert incident.acknowledged_via == "cli"
    acked = [data for kind, data in timeline if kind == "acknowledged"]
    assert acked and acked[0]["by"] == people[0] and acked[0]["via"] == "cli" and acked[0]["note"] == "我来处理"

    again = runner.invoke(app, ["ack", incident_id, "--by", people[1]])
    assert again.exit_code == 0, again.output
    assert "此前已确认接手" in flat(again.output) and f"{people[0]} (cli)" in flat(again.output)

    listed = runner.invoke(app, ["incidents"])
    assert listed.exit_code == 0, listed.output
    assert "acknowledged by" in listed.output and "MTTA" in listed.output
    assert f"{people[0]} (cli)" in flat(listed.output)


def test_ack_by_an_unknown_person_exits_1_naming_the_known_ids(people):
    incident_id = _open()
    result = runner.invoke(app, ["ack", incident_id, "--by", "nobody.here"])
    assert result.exit_code == 1
    output = flat(result.output)
    assert "nobody.here" in output and "contacts.yaml" in output and people[0] in output
    incident, _ = _incident(incident_id)
    assert incident.acknowledged_at is None and incident.status == "open"


def test_ack_of_an_unknown_short_or_closed_incident_exits_1(people):
    missing = runner.invoke(app, ["ack", "f" * 32, "--by", people[0]])
    assert missing.exit_code == 1 and "登记簿中没有事件" in flat(missing.output)
    incident_id = _open()
    short = runner.invoke(app, ["ack", incident_id[:4], "--by", people[0]])
    assert short.exit_code == 1 and "至少 6 个字符" in flat(short.output)

    from ledgerguard.runtime import get_runtime

    with get_runtime().session() as s:
        register.set_status(db_session=s, incident_id=incident_id, status=IncidentStatus.RESOLVED, actor="test")
    closed = runner.invoke(app, ["ack", incident_id, "--by", people[0]])
    assert closed.exit_code == 1 and "已恢复" in flat(closed.output)
    incident, timeline = _incident(incident_id)
    assert incident.acknowledged_at is None and "acknowledged" not in [k for k, _ in timeline]
