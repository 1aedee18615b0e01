"""The whole stack in the test: Prefect server, served deployments, relay, SMTP sink and the
intake on a real port (uvicorn in a thread), with a credential from LEDGERGUARD_INTAKE_TOKENS."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.support.served import Served, served_stack

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
    import uvicorn

    from ledgerguard.config import Settings
    from ledgerguard.embedded import free_port
    from ledgerguard.intake.app import create_app
    from ledgerguard.intake.models import IntakeSettings

    home = tmp_path_factory.mktemp("e2e") / "home"
    with served_stack(home, agency_template) as served, pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEDGERGUARD_INTAKE_TOKENS", f"prometheus:{TOKEN}:alertmanager+grafana")
        app = create_app(settings=Settings(home=home), intake=IntakeSettings())
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="on"))
        server.install_signal_handlers = lambda: None
        thread = threading.Thread(target=server.run, name="e2e-intake", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.05)
        assert server.started, "the intake did not start"
        try:
            yield Stack(served=served, intake_url=f"http://127.0.0.1:{port}", token=TOKEN)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
