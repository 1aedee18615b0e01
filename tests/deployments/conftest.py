"""A real Prefect server and every deployment served by `ledgerguard serve`, as `up` runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ledgerguard.config import PROJECT_ROOT


def wait_for(check, *, timeout: float, interval: float = 0.3, what: str = "condition"):
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def api(method: str, url: str, *, attempts: int = 8, **kwargs) -> httpx.Response:
    """One API call, retried on SQLite's 503 "database is locked" (as Prefect's own client does)."""
    for attempt in range(attempts):
        response = httpx.request(method, url, timeout=10, **kwargs)
        if response.status_code != 503 or attempt == attempts - 1:
            return response
        time.sleep(0.5 * (attempt + 1))
    return response


class Served:
    def __init__(self, *, home: Path, api_url: str, sink, server, process) -> None:
        self.home, self.api_url, self.sink, self.server, self.process = home, api_url, sink, server, process

    def post_events(self, events: list[dict]) -> httpx.Response:
        return api("POST", f"{self.api_url}/events", json=events)

    def flow_runs(self, *, deployment: str | None = None, flow_name: str | None = None) -> list[dict]:
        body: dict = {"sort": "EXPECTED_START_TIME_ASC"}
        if deployment:
            body["deployments"] = {"name": {"any_": [deployment]}}
        if flow_name:
            body["flows"] = {"name": {"any_": [flow_name]}}
        response = api("POST", f"{self.api_url}/flow_runs/filter", json=body)
        response.raise_for_status()
        return response.json()

    def deployment(self, flow: str, name: str) -> dict:
        response = api("GET", f"{self.api_url}/deployments/name/{flow}/{name}")
        response.raise_for_status()
        return response.json()

    def runtime(self):
        """A runtime on the served home's register (settings built from explicit values)."""
        from ledgerguard.config import Settings
        from ledgerguard.runtime import Runtime

        return Runtime(settings=Settings(home=self.home))


@pytest.fixture(scope="module")
def served(tmp_path_factory, agency_template):
    from ledgerguard.channels.smtp_sink import SmtpSink
    from ledgerguard.embedded import PrefectServer, free_port

    home = tmp_path_factory.mktemp("served") / "home"
    home.mkdir()
    shutil.copytree(agency_template, home / "agency")
    sink = SmtpSink(home / "mail", host="127.0.0.1", port=0).start()
    server = PrefectServer(prefect_home=home / "prefect", port=free_port()).start()
    env = {**os.environ, **server.env(), "LEDGERGUARD_HOME": str(home), "LEDGERGUARD_SMTP_HOST": "127.0.0.1",
           "LEDGERGUARD_SMTP_PORT": str(sink.port), "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    for name in ("LEDGERGUARD_REGISTER_URL", "LEDGERGUARD_AGENCY_DIR", "LEDGERGUARD_CONTACTS_FILE",
                 "LEDGERGUARD_LANGUAGE"):
        env.pop(name, None)
    log = open(home / "serve.log", "ab")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "ledgerguard.cli", "serve", "--home", str(home)],
                               env=env, cwd=str(PROJECT_ROOT), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    served = Served(home=home, api_url=server.api_url, sink=sink, server=server, process=process)

    def ready():
        assert process.poll() is None, (home / "serve.log").read_text()
        try:
            automations = httpx.post(f"{server.api_url}/automations/filter", json={}, timeout=3).json()
            deployments = httpx.post(f"{server.api_url}/deployments/filter", json={}, timeout=3).json()
        except httpx.HTTPError:
            return False
        return len(deployments) >= 6 and any(a["name"].startswith("ledgerguard-watchdog") for a in automations)

    import threading

    from ledgerguard.relay import run_relay_forever

    stop_relay = threading.Event()
    relay = threading.Thread(target=run_relay_forever, daemon=True, kwargs={
        "stop_event": stop_relay, "engine_or_runtime": served.runtime(), "api_url": server.api_url})
    try:
        wait_for(ready, timeout=120, what="served deployments and the watchdog automation")
        relay.start()
        yield served
    finally:
        stop_relay.set()
        if relay.is_alive():
            relay.join(timeout=15)
        import signal

        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        server.stop()
        sink.stop()
        log.close()
