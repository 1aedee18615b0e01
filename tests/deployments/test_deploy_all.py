"""`deploy_all`: the same list registered on a work pool, with its triggers and schedules."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.prefect


def test_deploy_all_registers_every_spec_on_a_work_pool(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments import DEPLOYMENTS, WATCHDOG_AUTOMATION, deploy_all
    from ledgerguard.config import PROJECT_ROOT
    from ledgerguard.embedded import PrefectServer, free_port

    with PrefectServer(prefect_home=tmp_path / "prefect", port=free_port()) as server:
        api = server.api_url
        assert httpx.post(f"{api}/work_pools/", json={"name": "lg-pool", "type": "process"},
                          timeout=10).status_code in (200, 201)
        with temporary_settings({PREFECT_API_URL: api}):
            ids = deploy_all(work_pool="lg-pool", source=str(PROJECT_ROOT))
        assert len(ids) == len(DEPLOYMENTS)
        deployments = {d["name"]: d for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()}
        for spec in DEPLOYMENTS:
            deployment = deployments[spec.name]
            assert deployment["work_pool_name"] == "lg-pool"
            assert deployment["entrypoint"] == spec.entrypoint
            assert sorted(deployment["tags"]) == sorted(spec.tags)
            assert len(deployment["schedules"]) == len(spec.schedules)
            for schedule in deployment["schedules"]:
                assert schedule["schedule"]["timezone"] == "Asia/Shanghai"
        automations = httpx.post(f"{api}/automations/filter", json={}, timeout=10).json()
        names = [a["name"] for a in automations]
        assert names.count(WATCHDOG_AUTOMATION) == 1
        assert {"signal-firing-ledger_loss", "signal-firing-backup_failure", "signal-resolved"} <= set(names)
