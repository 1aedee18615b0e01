"""The drill core without Prefect: sandbox, injection, scoring, rotation, drill recipients."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ledgerguard.catalog.models import DRILL_MEASURES


@pytest.fixture(scope="module")
def catalog():
    from ledgerguard.catalog.service import load_catalog

    return load_catalog()


def test_the_sandbox_is_a_copy_and_the_injection_breaks_only_the_copy(agency, tmp_path, catalog):
    from ledgerguard.agency import load_agency
    from ledgerguard.drills import service as drills

    production = agency.root
    sums = drills.checksums(production)
    sandbox = drills.prepare_sandbox(production=production, root=tmp_path / "drill")
    assert drills.checksums(sandbox.agency) == sums == sandbox.production_checksums

    entry = catalog.get("ledger_loss")
    copy = load_agency(sandbox.agency)
    resource, reports = drills.inject(entry=entry, scenario=entry.scenario(), agency=copy,
                                      now=datetime.now(timezone.utc), scratch=sandbox.scratch)
    assert resource.startswith("ledger:") and not agency.is_vip(resource.split(":", 1)[1])
    assert reports and reports[0]["injector"] == "ledger.delete_vouchers"
    assert drills.checksums(production) == sums
    assert drills.checksums(sandbox.agency) != sums


def test_a_folder_that_is_not_an_agency_is_refused(tmp_path):
    from ledgerguard.drills.service import DrillError, prepare_sandbox

    with pytest.raises(DrillError, match="not an agency folder"):
        prepare_sandbox(production=tmp_path, root=tmp_path / "sandbox")


def test_an_unknown_placeholder_in_a_drill_resource_is_named(agency):
    from ledgerguard.drills.service import DrillError, resolve_resource

    with pytest.raises(DrillError, match=r"\{branch\}.*unknown placeholder|unknown placeholder 'branch'"):
        resolve_resource(template="ledger:{branch}", agency=agency, now=datetime.now(timezone.utc))


def test_the_score_is_the_weighted_mean_of_the_measures_that_apply():
    from ledgerguard.drills.service import Measure, score

    weights = {"detected": 10, "rto_met": 30, "rpo_met": 60}
    assert score(measures=[Measure("detected", 1, ""), Measure("rto_met", 1, ""), Measure("rpo_met", None, "")],
                 weights=weights) == 100.0
    assert score(measures=[Measure("detected", 1, ""), Measure("rto_met", 0, ""), Measure("rpo_met", None, "")],
                 weights=weights) == 25.0
    assert score(measures=[Measure("detected", 1, ""), Measure("rto_met", 0, ""), Measure("rpo_met", 0.5, "")],
                 weights=weights) == 40.0


def test_drills_yaml_weights_name_only_known_measures(catalog):
    from pydantic import ValidationError

    from ledgerguard.catalog.models import DrillPolicy

    assert set(catalog.drills.weights) == set(DRILL_MEASURES)
    data = catalog.drills.model_dump()
    data["weights"] = {"detected": 1, "speed": 2}
    with pytest.raises(ValidationError, match="unknown measure"):
        DrillPolicy.model_validate(data)


def test_every_emergency_type_has_a_drill_played_by_its_own_injectors(catalog):
    from ledgerguard.detectors import get_injector

    for entry in catalog:
        drillable = [s for s in entry.scenarios if s.drill]
        assert drillable, entry.id
        for scenario in drillable:
            for step in scenario.drill.inject:
                assert get_injector(step.injector).emergency_type == entry.id, (entry.id, step.injector)


def test_a_type_without_a_drillable_scenario_is_a_catalog_error(tmp_path):
    import shutil

    import yaml

    from ledgerguard.catalog.service import check_catalog
    from ledgerguard.config import PROJECT_ROOT

    folder = tmp_path / "catalog"
    shutil.copytree(PROJECT_ROOT / "catalog", folder)
    path = folder / "office_outage.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for scenario in data["scenarios"]:
        scenario.pop("drill", None)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (folder / "drills.yaml").unlink()
    problems = [str(p) for p in check_catalog(folder)]
    assert any(p.startswith("office_outage.yaml") and "drill" in p for p in problems), problems
    assert any(p.startswith("drills.yaml") and "missing" in p for p in problems), problems


def test_the_monthly_drill_rotates_through_the_catalog_order(catalog):
    from ledgerguard.drills.service import pick_monthly

    types = list(catalog.entries)
    months = [pick_monthly(policy=catalog.drills, type_ids=types, on=datetime(2027, m, 10)) for m in range(1, 13)]
    assert len(set(months)) == 12  # a new type every month of the year
    order = catalog.drills.rotation
    first = order.index(months[0])
    assert months == [order[(first + i) % len(order)] for i in range(12)]


def test_a_drill_message_goes_to_the_drill_recipients_and_never_to_a_client():
    from ledgerguard.channels.contacts import Contacts, Recipient
    from ledgerguard.response.notifying import drill_targets

    contacts = Contacts.model_validate({
        "people": [{"id": "wang", "name": "王经理", "roles": ["manager"], "email": "wang@agency.example"}],
        "management_list": ["wang@agency.example"], "drill_recipients": ["yanlian@agency.example"]})
    staff = Recipient(person_id="wang", name="王经理", role="manager", channel="email", address="wang@agency.example")
    client = Recipient(person_id="C0001", name="客户", role="client", channel="email", address="boss@client.example")
    [target] = drill_targets(contacts=contacts, recipient=staff)
    assert (target.person_id, target.address) == ("wang", "yanlian@agency.example")
    assert [t.address for t in drill_targets(contacts=contacts, recipient=client)] == ["yanlian@agency.example"]

    no_box = contacts.model_copy(update={"drill_recipients": []})
    assert drill_targets(contacts=no_box, recipient=staff) == [staff]  # the participant themself
    assert drill_targets(contacts=no_box, recipient=client) == []       # never the real client


def test_check_names_a_drill_injector_that_is_unknown_or_of_another_type(tmp_path):
    import shutil

    import yaml

    from ledgerguard.catalog.service import check_catalog
    from ledgerguard.config import PROJECT_ROOT

    folder = tmp_path / "catalog"
    shutil.copytree(PROJECT_ROOT / "catalog", folder)
    for name, injector in (("ledger_loss", "ledger.no_such_thing"), ("backup_failure", "ledger.delete_file")):
        path = folder / f"{name}.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        next(s for s in data["scenarios"] if s.get("drill"))["drill"]["inject"][0]["injector"] = injector
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    problems = [str(p) for p in check_catalog(folder)]
    assert any(p.startswith("ledger_loss.yaml: scenarios.0.drill.inject.0.injector") and "no_such_thing" in p
               for p in problems), problems
    assert any(p.startswith("backup_failure.yaml") and "breaks ledger_loss, not backup_failure" in p
               for p in problems), problems
