"""The readiness check without a flow run: the sample agency's registers, what the register adds
(scored drills), a wrong file reported as a gap, owners and due dates, and
`ledgerguard readiness --check-only`."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
import yaml
from typer.testing import CliRunner

from ledgerguard.readiness.service import FILES, Gap, find_gaps, gap_owner, improvement_due, load_readiness
from tests.readiness.planted import local_today, plant_gaps
from tests.readiness.support import people_of, plant_drill, with_role


@pytest.fixture
def runtime(agency_dir):
    from ledgerguard.runtime import get_runtime

    return get_runtime()


def _check(runtime, as_of=None) -> list[dict]:
    from tasks.readiness import assess, collect

    return assess(runtime, collect(runtime, as_of))


def test_the_sample_registers_are_typed_complete_and_in_date(agency_dir, runtime):
    people = {p["id"] for p in people_of(agency_dir)}
    readiness, missing = load_readiness(agency_dir, people=people)
    assert missing == []
    assert {s.kind for s in readiness.supplies} >= {"laptop", "ukey", "ups", "offline_kit"}
    assert {r.kind for r in readiness.resources} >= {"vendor", "it_support", "lawyer", "insurer"}
    titles = " ".join(r.title for r in readiness.regulations)
    for law in ("会计法", "会计档案管理办法", "个人信息保护法", "网络安全法", "数据安全法", "税收征收管理法"):
        assert law in titles
    assert {r.person for r in readiness.training} == people
    assert set(readiness.raci) == set(runtime.catalog.entries)
    assert _check(runtime) == []


def test_the_sample_is_deterministic_for_a_seed(tmp_path):
    from datetime import datetime, timezone

    from ledgerguard.sample import generate_agency

    now = datetime(2026, 3, 10, 9, 30, tzinfo=timezone.utc)
    texts = []
    for name in ("a", "b"):
        agency = generate_agency(tmp_path / name, clients=2, nights=1, seed=5, now=now)
        texts.append([(agency.root / "readiness" / f).read_text(encoding="utf-8") for f in FILES.values()])
    assert texts[0] == texts[1]


def test_a_scored_drill_in_the_register_counts_as_drill_participation(agency_dir, runtime):
    planted = plant_gaps(agency_dir, runtime)
    undrilled = planted["undrilled"]
    assert ("training", undrilled) in {(g["register"], g["item"]) for g in _check(runtime)}
    plant_drill(runtime, participants=[undrilled], status="failed")       # a drill that broke counts for nobody
    plant_drill(runtime, participants=[undrilled], days_ago=400)          # nor one more than a year ago
    assert ("training", undrilled) in {(g["register"], g["item"]) for g in _check(runtime)}
    plant_drill(runtime, participants=[undrilled], days_ago=30)
    assert ("training", undrilled) not in {(g["register"], g["item"]) for g in _check(runtime)}


def test_find_gaps_takes_drill_dates_from_the_register_too():
    from ledgerguard.readiness.models import Readiness

    today = date(2026, 12, 3)
    gaps = find_gaps(readiness=Readiness(), today=today, people=["a", "b"], emergency_types=[],
                     drilled_on={"a": date(2026, 6, 1), "b": date(2025, 6, 1)})
    assert [(g.item, g.code, g.data["last_drill"]) for g in gaps] == [("b", "no_recent_drill", "2025-06-01")]


def test_a_wrong_register_is_a_gap_naming_the_file_and_the_rest_is_still_checked(agency_dir, runtime):
    path = agency_dir / "readiness" / FILES["resources"]
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    content[2]["contact"] = {"person": "王工"}
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    supplies = agency_dir / "readiness" / FILES["supplies"]
    items = yaml.safe_load(supplies.read_text(encoding="utf-8"))
    items[0]["last_checked"] = (local_today() - timedelta(days=200)).isoformat()
    supplies.write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")
    gaps = _check(runtime)
    assert {(g["register"], g["code"]) for g in gaps} == {("resources", "register_invalid"),
                                                         ("supplies", "check_overdue")}
    invalid = next(g for g in gaps if g["code"] == "register_invalid")
    assert str(path) in invalid["text"] and "2.contact" in invalid["text"] and "a phone or an email" in invalid["text"]


def test_an_owner_who_is_nobody_is_refused_naming_the_field(agency_dir):
    path = agency_dir / "readiness" / FILES["supplies"]
    items = yaml.safe_load(path.read_text(encoding="utf-8"))
    items[1]["owner"] = "zhang.nobody"
    path.write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")
    from ledgerguard.readiness.service import ReadinessError

    with pytest.raises(ReadinessError) as error:
        load_readiness(agency_dir, people={p["id"] for p in people_of(agency_dir)})
    assert error.value.field == "1.owner" and "'zhang.nobody'" in str(error.value)


def test_an_unquoted_on_key_in_training_is_read_as_the_date(tmp_path):
    folder = tmp_path / "readiness"
    folder.mkdir()
    (folder / FILES["training"]).write_text("- person: p1\n  on: 2026-06-01\n  kind: drill\n", encoding="utf-8")
    readiness, _ = load_readiness(tmp_path)
    assert readiness.training[0].on == date(2026, 6, 1)


def test_owners_and_due_dates(agency_dir, runtime):
    readiness, _ = load_readiness(agency_dir)
    contacts = runtime.contacts
    today = date(2026, 12, 3)
    expiring = Gap("supplies", "ups-server", "expiring", "x", due=today + timedelta(days=5),
                   data={"emergency_type": "office_outage"})
    assert gap_owner(gap=expiring, readiness=readiness, contacts=contacts) == with_role(agency_dir, "it")
    assert improvement_due(gap=expiring, today=today) == today + timedelta(days=5)   # before it expires
    overdue = Gap("supplies", "ups-server", "check_overdue", "x", due=today - timedelta(days=30))
    assert improvement_due(gap=overdue, today=today) == today + timedelta(days=7)    # never in the past
    # no owner on the item: the RACI's accountable for the type it serves (office_outage: owner)
    stray = Gap("supplies", "not-listed", "short", "x", data={"emergency_type": "office_outage"})
    assert gap_owner(gap=stray, readiness=readiness, contacts=contacts) == with_role(agency_dir, "owner")
    # nothing else answers: IT or the duty lead
    assert gap_owner(gap=Gap("supplies", "x", "short", "x"), readiness=readiness, contacts=contacts) == \
        with_role(agency_dir, "it")
    assert gap_owner(gap=Gap("training", "p", "no_recent_drill", "x"), readiness=readiness, contacts=contacts) == \
        with_role(agency_dir, "duty_lead")


def test_check_only_cli_lists_the_gaps_as_json_and_as_a_table(agency_dir, runtime, monkeypatch):
    from ledgerguard import cli
    from ledgerguard.cli import app

    monkeypatch.setattr(cli.console, "width", 220)
    planted = plant_gaps(agency_dir, runtime)
    runner = CliRunner()
    result = runner.invoke(app, ["readiness", "--check-only", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert {(g["register"], g["item"], g["code"]) for g in out["gaps"]} == set(planted["expected"])
    assert out["as_of"] == local_today().isoformat()
    table = runner.invoke(app, ["readiness", "--check-only"])
    assert table.exit_code == 0, table.output
    text = " ".join(table.output.split())
    assert "6 项缺口" in text and "机房UPS" in text and "尚未报到" in text
    from ledgerguard.improvements import service as items

    with runtime.session() as s:
        assert items.list_items(db_session=s) == []   # a check only: nothing raised
