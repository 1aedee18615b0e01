"""`ledgerguard drill NAME` runs a drill from the CLI and prints the scorecard; `improvements`
lists what it found and closes an item with a person's resolution."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.prefect


def test_drill_prints_the_scorecard_and_improvements_close(live_unattended):
    from ledgerguard.cli import app
    from ledgerguard.runtime import get_runtime

    runner = CliRunner()
    result = runner.invoke(app, ["drill", "ledger-loss"])
    assert result.exit_code in (0, 1), result.output
    assert "score" in result.output and "RTO" in result.output and "定级准确" in result.output
    assert "production" in result.output

    listed = runner.invoke(app, ["drills", "--json"])
    assert listed.exit_code == 0
    [row] = json.loads(listed.output)
    assert row["type"] == "ledger_loss" and row["status"] == "scored" and row["score"] is not None
    # the exit code and the printed verdict say what the register says
    assert result.exit_code == (0 if row["passed"] else 1)
    assert f"score {row['score']:.1f} / 100" in result.output
    assert ("未通过" in result.output) == (not row["passed"])

    items = json.loads(runner.invoke(app, ["improvements", "list", "--json"]).output)
    assert items and all(i["source"] == "drill" and i["owner"] for i in items)
    person = get_runtime().contacts.people[0].id
    closed = runner.invoke(app, ["improvements", "close", items[0]["id"], "--by", person,
                                 "--resolution", "对账清单加入值班手册"])
    assert closed.exit_code == 0, closed.output
    after = json.loads(runner.invoke(app, ["improvements", "list", "--all", "--json"]).output)
    assert next(i for i in after if i["id"] == items[0]["id"])["status"] == "closed"

    unknown = runner.invoke(app, ["drill", "no-such-type"])
    assert unknown.exit_code == 2 and "unknown emergency type" in unknown.output
    nobody = runner.invoke(app, ["improvements", "close", items[0]["id"], "--by", "nobody", "--resolution", "x"])
    assert nobody.exit_code == 1 and "nobody" in nobody.output
