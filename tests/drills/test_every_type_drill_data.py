"""Every emergency type's drill, played on a sandbox of the sample agency without Prefect: the
type's own injectors break the copy, its detectors find it, and the rubric grades it at the level
the drill expects. A drill that cannot be detected or graded as planned fails here, not in the
agency's monthly drill."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest


@pytest.fixture(scope="module")
def catalog():
    from ledgerguard.catalog.service import load_catalog

    return load_catalog()


def type_ids() -> list[str]:
    from ledgerguard.catalog.service import load_catalog

    return sorted(load_catalog().entries)


@pytest.mark.parametrize("emergency_type", type_ids())
def test_the_drill_is_detected_and_graded_as_expected(emergency_type, catalog, agency, tmp_path):
    from ledgerguard.agency import load_agency
    from ledgerguard.calendar import working_days_known
    from ledgerguard.classification.service import classify
    from ledgerguard.drills import service as drills
    from ledgerguard.response.detection import run_detectors

    entry = catalog.get(emergency_type)
    scenario = entry.scenario()
    at = drills.drill_moment(entry=entry, scenario=scenario, calendar=catalog.calendar,
                             now=datetime.now(timezone.utc))
    if not working_days_known(at.year):
        pytest.skip(f"chinese_calendar has no holiday data for {at.year} yet: working days to the deadline "
                    "cannot be counted (upgrade chinese-calendar once the State Council publishes them)")
    sandbox = drills.prepare_sandbox(production=agency.root, root=tmp_path / "drill")
    resource, reports = drills.inject(entry=entry, scenario=scenario, agency=load_agency(sandbox.agency), now=at,
                                      scratch=sandbox.scratch)
    assert reports
    detection = run_detectors(entry=entry, agency=load_agency(sandbox.agency), resource=resource,
                              scratch_dir=sandbox.scratch, now=at)
    assert detection.findings, detection.clear_reasons
    facts: dict = {}
    for finding in detection.findings:
        facts.update(finding.facts)
    graded = classify(entry=entry, rubric=catalog.rubric, facts=facts, detected_at=at, calendar=catalog.calendar)
    expected = drills.expected_level(entry=entry, scenario=scenario, rubric=catalog.rubric,
                                     calendar=catalog.calendar, at=at)
    assert graded.level.value == expected, [line.rule for line in graded.fired]
