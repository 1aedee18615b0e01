"""Fixtures for the intake: a real app on a fresh SQLite register in a tmp LEDGERGUARD_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import asyncio

import httpx
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
PROM_TOKEN = "prom-token-0123456789abcdef"
PD_KEY = "R0UTINGKEY0123456789abcdefABCDEF"
OPS_TOKEN = "ops-token-0123456789abcdef"
PROM = {"Authorization": f"Bearer {PROM_TOKEN}"}
OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}


@pytest.fixture
def am_payload() -> dict:
    return json.loads((FIXTURES / "alertmanager_v4.json").read_text(encoding="utf-8"))


def am_alert(labels: dict, *, status: str = "firing", fingerprint: str = "", summary: str = "s") -> dict:
    return {"status": status, "labels": labels, "annotations": {"summary": summary},
            "startsAt": "2025-03-03T01:58:30Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph", "fingerprint": fingerprint}


def am_body(*alerts: dict, status: str = "firing") -> dict:
    return {"version": "4", "groupKey": "{}:{}", "status": status, "receiver": "ledgerguard", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "alerts": list(alerts)}


@pytest.fixture
def credentials_file(lg_home) -> Path:
    path = lg_home / "intake-credentials.yaml"
    path.write_text(
        "credentials:\n"
        f"  - name: prometheus\n    token: {PROM_TOKEN}\n    sources: [alertmanager, grafana]\n"
        f"  - name: pd-bridge\n    token: {PD_KEY}\n    sources: [pagerduty]\n",
        encoding="utf-8")
    return path


class Client:
    """Real HTTP to the ASGI app through ``httpx.ASGITransport``, called synchronously."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, url: str, **kw) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("203.0.113.7", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    def post(self, url: str, **kw) -> httpx.Response:
        return self.request("POST", url, **kw)

    def get(self, url: str, **kw) -> httpx.Response:
        return self.request("GET", url, **kw)


@pytest.fixture
def make_client(lg_home, credentials_file):
    """Build a TestClient for an intake app; keyword args go to IntakeSettings / create_app."""
    from ledgerguard.config import get_settings
    from ledgerguard.intake.app import create_app
    from ledgerguard.intake.models import IntakeSettings

    clients = []

    def make(*, router=None, engine=None, **intake_kw) -> Client:
        intake_kw.setdefault("tokens", f"ops:{OPS_TOKEN}")
        app = create_app(settings=get_settings(), engine=engine, router=router,
                         intake=IntakeSettings(**intake_kw))
        clients.append(app)
        return Client(app)

    yield make
    for app in clients:
        app.state.intake.engine.dispose()


@pytest.fixture
def client(make_client) -> Client:
    return make_client()


@pytest.fixture
def db(client):
    """Open a session on the app's register: ``with db() as s: ...``."""
    from ledgerguard.register.db import session_scope

    client.app.state.intake.ensure_ready()
    engine = client.app.state.intake.engine
    return lambda: session_scope(engine)


@pytest.fixture
def db_router_factory(make_client, tmp_path):
    """A client whose single ledger route has the given group/flap settings, and its db()."""
    from ledgerguard.intake.routing import load_routes
    from ledgerguard.register.db import session_scope

    def make(*, group_by: str = "[alertname]", flap_threshold: int = 0, flap_window_seconds: int = 600,
             group_window_seconds: int = 300):
        path = tmp_path / "routes.yaml"
        path.write_text(
            "routes:\n"
            "  - name: ledger\n"
            "    match_re: {alertname: 'Ledger.*'}\n"
            "    emergency_type: ledger_loss\n"
            "    resource: 'ledger:{{ labels.client_id }}'\n"
            f"    group_by: {group_by}\n"
            f"    group_window_seconds: {group_window_seconds}\n"
            f"    flap_threshold: {flap_threshold}\n"
            f"    flap_window_seconds: {flap_window_seconds}\n", encoding="utf-8")
        client = make_client(router=load_routes(path))
        client.app.state.intake.ensure_ready()
        engine = client.app.state.intake.engine
        return client, (lambda: session_scope(engine))

    return make
