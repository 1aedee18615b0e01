"""`ledgerguard up` — the always-on stack on one machine, in one command (an entry point).

Started in order: the sample agency (first start only), the local SMTP sink (when no real SMTP
is configured), the persistent Prefect server on SQLite under ``<home>/prefect``, every
deployment served by a child process (`ledgerguard serve`), the outbox relay (a thread) and the
intake (uvicorn in a thread, when `ledgerguard.intake.app` is importable).

Stopped on Ctrl-C / SIGTERM in the reverse order: intake first (no new signals), the relay
drains what is due, the serve child stops (its deployments pause), then the server and the
sink. Nothing is lost: rows still pending in the outbox are delivered at the next start.

``<home>/stack.json`` says what runs where (URLs, ports, pids); `ledgerguard status` reads it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ledgerguard.config import get_settings, reset_settings
from ledgerguard.embedded import PrefectServer, free_port, port_is_free, server_is_healthy, stop_process_group

logger = logging.getLogger("ledgerguard.stack")

STATE_FILE = "stack.json"
WATCHDOG_DEPLOYMENT = "page-duty-lead/page-duty-lead"


def state_path(home: Path) -> Path:
    return home / STATE_FILE


def read_state(home: Path) -> dict[str, Any] | None:
    path = state_path(home)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _write_state(home: Path, state: dict[str, Any]) -> None:
    path = state_path(home)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{int(pid)}/stat", encoding="utf-8") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def deployments_ready(api_url: str) -> bool:
    """Every deployment of the list is registered, unpaused and polled by a runner (READY), and
    the watchdog automation exists: the serve child is taking runs."""
    import httpx

    from deployments import DEPLOYMENTS

    wanted = {s.name for s in DEPLOYMENTS}
    try:
        automations = httpx.post(f"{api_url}/automations/filter", json={}, timeout=3).json()
        served = httpx.post(f"{api_url}/deployments/filter",
                            json={"deployments": {"name": {"any_": sorted(wanted)}}}, timeout=3).json()
    except (httpx.HTTPError, ValueError, TypeError):
        return False
    if not isinstance(automations, list) or not isinstance(served, list):
        return False  # a 503 from a busy SQLite server
    has_watchdog = any(a.get("name", "").startswith("ledgerguard-watchdog") for a in automations)
    ready = {d["name"] for d in served if not d.get("paused") and d.get("status") == "READY"}
    return has_watchdog and wanted <= ready


def _pick_port(wanted: int) -> int:
    return wanted if wanted and port_is_free(wanted) else free_port()


@dataclass
class Stack:
    home: Path
    prefect_port: int = 4200
    intake_port: int = 8600
    smtp_port: int = 8025
    host: str = "127.0.0.1"
    clients: int = 200
    poll_frequency: int = 1
    serve_limit: int | None = None
    log: Callable[[str], None] = print
    state: dict[str, Any] = field(default_factory=dict)

    _server: PrefectServer | None = None
    _sink: Any = None
    _serve: subprocess.Popen | None = None
    _intake: Any = None
    _intake_thread: threading.Thread | None = None
    _relay_stop: threading.Event = field(default_factory=threading.Event)
    _relay_thread: threading.Thread | None = None
    _intake_port: int = 0

    # -- start ------------------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        self.home.mkdir(parents=True, exist_ok=True)
        os.environ["LEDGERGUARD_HOME"] = str(self.home)
        self._reload()
        settings = get_settings()
        self.state = {"home": str(self.home), "pid": os.getpid(), "status": "starting",
                      "started_at": datetime.now(timezone.utc).isoformat(), "components": {}}
        _write_state(self.home, self.state)

        if not (settings.agency_path / "agency.yaml").exists():
            from ledgerguard.sample.generator import generate_agency

            self.log(f"sample agency: generating {self.clients} clients in {settings.agency_path}")
            generate_agency(settings.agency_path, clients=self.clients)
        self.state["components"]["agency"] = {"path": str(settings.agency_path)}

        if not os.environ.get("LEDGERGUARD_SMTP_HOST"):
            from ledgerguard.channels.smtp_sink import SmtpSink

            self._sink = SmtpSink(settings.mail_dir, host=self.host, port=_pick_port(self.smtp_port)).start()
            os.environ["LEDGERGUARD_SMTP_HOST"] = self.host
            os.environ["LEDGERGUARD_SMTP_PORT"] = str(self._sink.port)
            self.state["components"]["smtp_sink"] = {"host": self.host, "port": self._sink.port,
                                                     "pid": os.getpid(), "mail_dir": str(settings.mail_dir)}
            self.log(f"SMTP sink: {self.host}:{self._sink.port} → {settings.mail_dir}")
        else:
            self.state["components"]["smtp"] = {"host": os.environ["LEDGERGUARD_SMTP_HOST"],
                                                "port": int(os.environ.get("LEDGERGUARD_SMTP_PORT", "25"))}
        self._reload()

        self._server = PrefectServer(prefect_home=self.home / "prefect", port=self.prefect_port, host=self.host)
        self.log("Prefect server: starting …")
        self._server.start()
        os.environ.update(self._server.env())
        os.environ["PREFECT_RUNNER_POLL_FREQUENCY"] = str(self.poll_frequency)
        self._reload()
        self.state["components"]["prefect"] = {
            "api_url": self._server.api_url, "ui_url": self._server.ui_url, "port": self._server.port,
            "pid": self._server.process.pid if self._server.process else None, "reused": self._server.reused}
        self.log(f"Prefect server: UI {self._server.ui_url}  API {self._server.api_url}")
        _write_state(self.home, self.state)

        # The intake's port is chosen before the flows start: every notification carries
        # acknowledgement links that point at it.
        self._intake_port = _pick_port(self.intake_port)
        if not os.environ.get("LEDGERGUARD_PUBLIC_URL"):
            os.environ["LEDGERGUARD_PUBLIC_URL"] = f"http://{self.host}:{self._intake_port}"
        self._reload()
        self._start_serve()
        self._start_relay()
        self._start_intake()
        self.state["status"] = "running"
        _write_state(self.home, self.state)
        self.log("LedgerGuard is up; Ctrl-C (or SIGTERM) stops it cleanly.")
        return self.state

    def _reload(self) -> None:
        from ledgerguard.runtime import reset_runtime

        reset_settings()
        reset_runtime()

    def _start_serve(self, timeout: float = 120.0) -> None:
        log_file = self.home / "serve.log"
        command = [sys.executable, "-m", "ledgerguard.cli", "serve", "--home", str(self.home)]
        limit = get_settings().flow_run_limit if self.serve_limit is None else self.serve_limit
        command += ["--limit", str(limit)]
        log = open(log_file, "ab")  # noqa: SIM115 — kept open for the child's lifetime
        # Its own session: Ctrl-C in the terminal reaches only us, and we stop it in order.
        self._serve = subprocess.Popen(command, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, cwd=str(Path(__file__).resolve().parent.parent))
        self.state["components"]["serve"] = {"pid": self._serve.pid, "log": str(log_file),
                                             "flow_run_limit": limit or None}
        self.log("deployments: serving …")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._serve.poll() is not None:
                raise RuntimeError(f"`ledgerguard serve` exited with {self._serve.returncode}; see {log_file}")
            if self._watchdog_ready():
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"deployments not served within {timeout:.0f} s; see {log_file}")
        from deployments import DEPLOYMENTS

        self.state["components"]["serve"]["deployments"] = [s.name for s in DEPLOYMENTS]
        self.log(f"deployments: {len(DEPLOYMENTS)} served")

    def _watchdog_ready(self) -> bool:
        return deployments_ready(self._server.api_url)

    def _start_relay(self) -> None:
        from ledgerguard.register import service as register

        if not hasattr(register, "claim_outbox_batch"):
            self.log("relay: the register has no outbox yet; not started")
            self.state["components"]["relay"] = {"running": False, "reason": "no outbox in the register"}
            return
        from ledgerguard.relay import run_relay_forever
        from ledgerguard.runtime import get_runtime

        runtime = get_runtime()
        self._relay_thread = threading.Thread(
            target=run_relay_forever, name="ledgerguard-relay", daemon=True,
            kwargs={"stop_event": self._relay_stop, "engine_or_runtime": runtime,
                    "api_url": self._server.api_url})
        self._relay_thread.start()
        self.state["components"]["relay"] = {"running": True, "pid": os.getpid(), "poll_seconds": 0.5}
        self.log("relay: outbox → Prefect events every 0.5 s")

    def _start_intake(self) -> None:
        try:
            from ledgerguard.intake.app import create_app
        except ImportError as exc:
            self.log(f"intake: not available ({exc}); not started")
            self.state["components"]["intake"] = {"running": False, "reason": str(exc)}
            return
        import uvicorn

        port = self._intake_port
        config = uvicorn.Config(create_app(), host=self.host, port=port, log_level="warning", lifespan="on")
        self._intake = uvicorn.Server(config)
        self._intake.install_signal_handlers = lambda: None  # signals are ours
        self._intake_thread = threading.Thread(target=self._intake.run, name="ledgerguard-intake", daemon=True)
        self._intake_thread.start()
        deadline = time.monotonic() + 30
        while not self._intake.started and time.monotonic() < deadline and self._intake_thread.is_alive():
            time.sleep(0.1)
        url = f"http://{self.host}:{port}"
        self.state["components"]["intake"] = {"running": bool(self._intake.started), "url": url, "port": port,
                                              "pid": os.getpid()}
        self.log(f"intake: {url}")

    # -- stop -------------------------------------------------------------------------------------

    def stop(self) -> None:
        self.state["status"] = "stopping"
        _write_state(self.home, self.state)
        if self._intake is not None:
            self._intake.should_exit = True
            if self._intake_thread is not None:
                self._intake_thread.join(timeout=10)
            self.log("intake: stopped")
        if self._relay_thread is not None:
            self._relay_stop.set()
            self._relay_thread.join(timeout=15)
            from ledgerguard.relay import drain
            from ledgerguard.runtime import get_runtime

            try:
                result = drain(engine_or_runtime=get_runtime(), api_url=self._server.api_url, timeout=10)
                self.log(f"relay: drained ({result.delivered} delivered, {result.failed} left for next start)")
            except Exception as exc:  # noqa: BLE001 — pending rows simply stay for the next start
                self.log(f"relay: drain stopped: {exc}")
        if self._serve is not None and self._serve.poll() is None:
            stop_process_group(self._serve, signal.SIGINT, timeout=25)
            self.log("deployments: serve stopped")
        if self._server is not None:
            self._server.stop()
            self.log("Prefect server: stopped")
        if self._sink is not None:
            self._sink.stop()
        self.state["status"] = "stopped"
        self.state["stopped_at"] = datetime.now(timezone.utc).isoformat()
        _write_state(self.home, self.state)


def run_up(*, home: Path, prefect_port: int = 4200, intake_port: int = 8600, smtp_port: int = 8025,
           clients: int = 200, poll_frequency: int = 1, serve_limit: int | None = None,
           log: Callable[[str], None] = print) -> int:
    """Start the stack and block until SIGINT/SIGTERM; then stop it in order. Returns an exit code."""
    stop = threading.Event()

    def _on_signal(signum, _frame) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(home=home, prefect_port=prefect_port, intake_port=intake_port, smtp_port=smtp_port,
                  clients=clients, poll_frequency=poll_frequency, serve_limit=serve_limit, log=log)
    try:
        stack.start()
        while not stop.wait(1.0):
            if stack._serve is not None and stack._serve.poll() is not None:
                log(f"serve exited with {stack._serve.returncode}; stopping")
                return_code = 1
                break
        else:
            return_code = 0
        return return_code
    finally:
        log("LedgerGuard: shutting down …")
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        log("LedgerGuard: stopped")


# --- status ----------------------------------------------------------------------------------------


def _tcp_open(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def stack_status(*, home: Path) -> dict[str, Any]:
    """What runs where (from stack.json, checked live), open incidents by level, outbox counts."""
    state = read_state(home) or {}
    components = state.get("components", {})
    report: dict[str, Any] = {"home": str(home), "status": state.get("status", "not started"),
                              "pid": state.get("pid"), "up_alive": pid_alive(state.get("pid")),
                              "components": {}}
    for name, info in components.items():
        live = dict(info)
        if "pid" in info:
            live["alive"] = pid_alive(info.get("pid"))
        if name == "prefect":
            live["healthy"] = server_is_healthy(info["api_url"], timeout=2)
        elif "port" in info and name in ("intake", "smtp_sink", "smtp"):
            live["listening"] = _tcp_open(info.get("host", "127.0.0.1"), info["port"])
        report["components"][name] = live

    from ledgerguard.register import service as register
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    levels: dict[str, int] = {}
    drills = 0
    with runtime.session() as db_session:
        for incident in register.list_incidents(db_session=db_session, open_only=True):
            if incident.drill:  # an exercise is not an emergency: counted apart
                drills += 1
                continue
            key = str(incident.level) if incident.level else "unclassified"
            levels[key] = levels.get(key, 0) + 1
        stats = register.outbox_stats(db_session=db_session) if hasattr(register, "outbox_stats") else None
    report["open_incidents"] = {"total": sum(levels.values()), "by_level": dict(sorted(levels.items())),
                                "drills": drills}
    if stats is not None and not isinstance(stats, dict):
        stats = stats.model_dump() if hasattr(stats, "model_dump") else dict(vars(stats))
    report["outbox"] = stats
    return report
