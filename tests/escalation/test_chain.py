"""Escalation chains as data (no Prefect): rounds from the catalog, frozen into the incident."""

from __future__ import annotations

import shutil

import pytest
import yaml

from ledgerguard.catalog.service import CatalogError, load_catalog
from ledgerguard.config import PROJECT_ROOT
from ledgerguard.escalation.service import current_chain, freeze_chain, plan_rounds
from ledgerguard.models import Signal
from ledgerguard.register import service as register


@pytest.fixture
def catalog():
    return load_catalog(PROJECT_ROOT / "catalog")


def test_rounds_flatten_repeats_resolve_routing_and_default_to_the_ack_sla(catalog):
    entry = catalog.get("ledger_loss")
    rounds = plan_rounds(entry=entry, rubric=catalog.rubric, level=1)
    # rubric.yaml level 1: routing 10 min; duty_lead+manager 10 min twice; owner 15 min
    assert [(r.step, r.repeat) for r in rounds] == [(1, 1), (2, 1), (2, 2), (3, 1)]
    assert rounds[0].roles == tuple(entry.roles_for(1))
    assert rounds[1].roles == ("duty_lead", "manager") and rounds[3].roles == ("owner",)
    assert [r.wait_minutes for r in rounds] == [10, 10, 10, 15]
    level4 = plan_rounds(entry=entry, rubric=catalog.rubric, level=4)
    assert level4[0].wait_minutes == catalog.rubric.sla[4].ack_minutes   # no wait given: the ack SLA


def test_a_type_may_replace_a_levels_chain(tmp_path):
    folder = tmp_path / "catalog"
    shutil.copytree(PROJECT_ROOT / "catalog", folder)
    path = folder / "ransomware.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["escalation"] = {1: [{"notify": "routing", "wait_minutes": 5}, {"notify": ["owner", "legal"]}]}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    catalog = load_catalog(folder)
    rounds = plan_rounds(entry=catalog.get("ransomware"), rubric=catalog.rubric, level=1)
    assert [(r.roles, r.wait_minutes) for r in rounds][1] == (("owner", "legal"), 10)  # ransomware's 1: ack 10 min


@pytest.mark.parametrize("chains, field", [
    ({1: [{"notify": "routing"}], 2: [{"notify": "routing"}], 3: [{"notify": "routing"}]}, "escalation"),
    ({**{lvl: [{"notify": "routing"}] for lvl in (1, 2, 3)}, 4: [{"notify": []}]}, "escalation.4.0.notify"),
    ({**{lvl: [{"notify": "routing"}] for lvl in (1, 2, 3)}, 4: [{"notify": ["nobody"]}]}, "escalation.4.0.notify"),
    ({**{lvl: [{"notify": "routing"}] for lvl in (1, 2, 3)}, 4: [{"notify": "routing", "wait_minutes": 0}]},
     "escalation.4.0.wait_minutes"),
])
def test_a_bad_chain_is_a_catalog_error_naming_the_field(tmp_path, chains, field):
    folder = tmp_path / "catalog"
    shutil.copytree(PROJECT_ROOT / "catalog", folder)
    path = folder / "rubric.yaml"
    rubric = yaml.safe_load(path.read_text(encoding="utf-8"))
    rubric["escalation"] = chains
    path.write_text(yaml.safe_dump(rubric, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(CatalogError) as error:
        load_catalog(folder)
    assert any(p.file == "rubric.yaml" and p.field.startswith(field) for p in error.value.problems), error.value


def test_the_frozen_chain_is_what_the_incident_keeps(lg_home, catalog, tmp_path):
    from ledgerguard.runtime import get_runtime

    entry = catalog.get("ledger_loss")
    runtime = get_runtime()
    with runtime.session() as db_session:
        incident, _ = register.open_or_join_incident(
            db_session=db_session, title="t",
            signal=Signal(source="test", emergency_type="ledger_loss", resource="ledger:C0001"))
        rounds, frozen = freeze_chain(db_session=db_session, incident_id=incident.id, entry=entry,
                                      rubric=catalog.rubric, level=4)
        assert frozen and rounds[1].roles == ("manager",)

        # The config changes; the incident keeps the chain it was frozen with.
        folder = tmp_path / "edited"
        shutil.copytree(PROJECT_ROOT / "catalog", folder)
        path = folder / "rubric.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["escalation"][4][1]["notify"] = ["owner"]
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        edited = load_catalog(folder).rubric
        again, frozen_again = freeze_chain(db_session=db_session, incident_id=incident.id, entry=entry,
                                           rubric=edited, level=4)
        assert not frozen_again and again == rounds
        assert plan_rounds(entry=entry, rubric=edited, level=4)[1].roles == ("owner",)

        # Graded more severe later: that level gets its own chain, frozen then, and takes over.
        severe, _ = freeze_chain(db_session=db_session, incident_id=incident.id, entry=entry, rubric=edited, level=1)
        level, current = current_chain(register.get_incident(db_session=db_session, incident_id=incident.id))
        assert level == 1 and current == severe
        kinds = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=incident.id)]
        assert kinds.count("escalation.frozen") == 2
