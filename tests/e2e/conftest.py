"""The whole stack in the test: Prefect server, served deployments, relay, SMTP sink and the
intake on a real port (uvicorn in a thread), with a credential from LEDGERGUARD_INTAKE_TOKENS."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.support.served import Served, running_intake, served_stack

TOKEN = "e2e-prometheus-token-0123456789"


@dataclass
class Stack:
    served: Served
    intake_url: str
    token: str

    def post(self, path: str, body=None, *, token: str | None = None, raw: bytes | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"} if token != "" else {}
        if raw is not None:
            headers["Content-Type"] = "application/json"
            return httpx.post(f"{self.intake_url}{path}", content=raw, headers=headers, timeout=30)
        return httpx.post(f"{self.intake_url}{path}", json=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, agency_template):
    from ledgerguard.embedded import free_port
    from tests.support.people import approving

    home = tmp_path_factory.mktemp("e2e") / "home"
    port = free_port()
    with served_stack(home, agency_template, env={"LEDGERGUARD_PUBLIC_URL": f"http://127.0.0.1:{port}"}) as served, \
            approving(api_url=served.api_url), pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEDGERGUARD_INTAKE_TOKENS", f"prometheus:{TOKEN}:alertmanager+grafana")
        with running_intake(home, port) as url:
            yield Stack(served=served, intake_url=url, token=TOKEN)
