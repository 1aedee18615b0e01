"""A real Prefect server, every deployment served by `ledgerguard serve` and the outbox relay,
as `ledgerguard up` runs them — shared by tests/deployments and tests/e2e."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from ledgerguard.config import PROJECT_ROOT
from ledgerguard.embedded import stop_process_group
from ledgerguard.embedded import wait_until as wait_for


def api(method: str, url: str, *, attempts: int = 8, **kwargs) -> httpx.Response:
    """One API call, retried on SQLite's 503 "database is locked" (as Prefect's own client does)."""
    for attempt in range(attempts):
        response = httpx.request(method, url, timeout=10, **kwargs)
        if response.status_code != 503 or attempt == attempts - 1:
            return response
        time.sleep(0.5 * (attempt + 1))
    return response


class Served:
    def __init__(self, *, home: Path, api_url: str, sink, server, process, env: dict[str, str] | None = None,
                 log=None) -> None:
        self.home, self.api_url, self.sink, self.server, self.process = home, api_url, sink, server, process
        self.env, self.log = env or {}, log

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

    # -- the serve child ------------------------------------------------------------------------

    def start_serve(self) -> None:
        """(Re)start `ledgerguard serve` against the server (as a supervisor would)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ledgerguard.cli", "serve", "--home", str(self.home)], env=self.env,
            cwd=str(PROJECT_ROOT), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def serve_ready(self) -> bool:
        from ledgerguard.stack import deployments_ready

        assert self.process.poll() is None, (self.home / "serve.log").read_text()[-4000:]
        return deployments_ready(self.api_url)

    def stop_serve(self) -> None:
        stop_process_group(self.process, signal.SIGINT, timeout=20)


@contextlib.contextmanager
def served_stack(home: Path, agency_template: Path, *, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Sample agency, SMTP sink, Prefect server, `ledgerguard serve` child and relay thread.
    ``env`` adds settings for the served flows (a catalog folder, the intake's public URL…)."""
    from ledgerguard.channels.smtp_sink import SmtpSink
    from ledgerguard.embedded import PrefectServer, free_port
    from ledgerguard.relay import run_relay_forever

    home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(agency_template, home / "agency")
    sink = SmtpSink(home / "mail", host="127.0.0.1", port=0).start()
    server = PrefectServer(prefect_home=home / "prefect", port=free_port()).start()
    env = {**os.environ, **server.env(), "LEDGERGUARD_HOME": str(home), "LEDGERGUARD_SMTP_HOST": "127.0.0.1",
           "LEDGERGUARD_SMTP_PORT": str(sink.port), "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "PREFECT_LOGGING_LEVEL": "WARNING",
           # Sweeps firing on their own would add runs no test asked for (and CPU); tests start
           # the runs they mean. The schedules are registered, paused.
           "LEDGERGUARD_SCHEDULES_ACTIVE": "false", **(env or {})}
    for name in ("LEDGERGUARD_REGISTER_URL", "LEDGERGUARD_AGENCY_DIR", "LEDGERGUARD_CONTACTS_FILE",
                 "LEDGERGUARD_LANGUAGE"):
        env.pop(name, None)
    log = open(home / "serve.log", "ab")  # noqa: SIM115
    served = Served(home=home, api_url=server.api_url, sink=sink, server=server, process=None, env=env, log=log)
    served.start_serve()

    stop_relay = threading.Event()
    relay = threading.Thread(target=run_relay_forever, daemon=True, kwargs={
        "stop_event": stop_relay, "engine_or_runtime": served.runtime(), "api_url": server.api_url})
    try:
        wait_for(served.serve_ready, timeout=120, what="served deployments and the watchdog automation")
        relay.start()
        yield served
    finally:
        stop_relay.set()
        if relay.is_alive():
            relay.join(timeout=15)
        served.stop_serve()
        server.stop()
        sink.stop()
        log.close()


@contextlib.contextmanager
def running_intake(home: Path, port: int) -> Iterator[str]:
    """The intake app of ``home`` on a real port (uvicorn in a thread); yields its URL."""
    import uvicorn

    from ledgerguard.config import Settings
    from ledgerguard.intake.app import create_app
    from ledgerguard.intake.models import IntakeSettings

    app = create_app(settings=Settings(home=home), intake=IntakeSettings())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    server.install_signal_handlers = lambda: None
    thread = threading.Thread(target=server.run, name="test-intake", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    assert server.started, "the intake did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
