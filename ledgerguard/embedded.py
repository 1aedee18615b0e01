"""The embedded default: a persistent local Prefect server on SQLite, started as a subprocess.

An ephemeral Prefect server loses task runs when its process exits (see shared notes), so
anything whose history matters — the demo included — talks to a real `prefect server start`
whose database lives under LedgerGuard's home folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def prefect_environment(*, prefect_home: Path, port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """Environment variables that point Prefect (client, server and UI) at one local server."""
    api = f"http://{host}:{port}/api"
    return {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": api,
        "PREFECT_UI_API_URL": api,
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # SQLite answers 503 "database is locked" under overlapping runs; Prefect's client retries
        # those with backoff, and its default of 5 tries was seen to run out in an alert storm
        # (a tag-concurrency slot request failed the run). Embedded only: PostgreSQL has no such stalls.
        "PREFECT_CLIENT_MAX_RETRIES": os.environ.get("PREFECT_CLIENT_MAX_RETRIES", "12"),
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    }


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_is_healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(check, *, timeout: float, interval: float = 0.3, what: str = "condition"):
    """Poll ``check`` until it returns something truthy (returned); TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_process_group(process: subprocess.Popen | None, sig: int = signal.SIGTERM, *,
                       timeout: float = 20.0) -> None:
    """Ask a child started in its own session to stop, then kill its group if it will not."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


class PrefectServer:
    """`prefect server start` in a child process; reused when one already answers on the port."""

    def __init__(self, *, prefect_home: Path, port: int = 4200, host: str = "127.0.0.1",
                 log_file: Path | None = None) -> None:
        self.prefect_home = prefect_home
        self.host = host
        self.port = port
        self.log_file = log_file or prefect_home / "server.log"
        self.process: subprocess.Popen | None = None
        self.reused = False

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return prefect_environment(prefect_home=self.prefect_home, port=self.port, host=self.host)

    def start(self, timeout: float = 120.0) -> "PrefectServer":
        if server_is_healthy(self.api_url):
            self.reused = True
            return self
        if not port_is_free(self.port, self.host):
            self.port = free_port(self.host)
        self.prefect_home.mkdir(parents=True, exist_ok=True)
        prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
        command = [prefect, "server", "start", "--host", self.host, "--port", str(self.port)] if prefect \
            else [sys.executable, "-m", "prefect", "server", "start", "--host", self.host, "--port", str(self.port)]
        env = {**os.environ, **self.env()}
        log = open(self.log_file, "ab")  # noqa: SIM115 — kept open for the child's lifetime
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Prefect server exited with {self.process.returncode}; see {self.log_file}")
            if server_is_healthy(self.api_url, timeout=1.0):
                return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"Prefect server did not become healthy within {timeout:.0f} s; see {self.log_file}")

    def stop(self, timeout: float = 20.0) -> None:
        stop_process_group(self.process, signal.SIGTERM, timeout=timeout)

    def __enter__(self) -> "PrefectServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
