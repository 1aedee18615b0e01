"""`ledgerguard up` as a user starts it: a subprocess with its own home and ports; SIGTERM stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ledgerguard.config import PROJECT_ROOT
from ledgerguard.embedded import free_port

pytestmark = pytest.mark.prefect


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_up_runs_the_stack_status_reports_it_and_sigterm_stops_it_cleanly(tmp_path):
    home = tmp_path / "home"
    ports = {"port": free_port(), "intake": free_port(), "smtp": free_port()}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LEDGERGUARD_", "PREFECT_API_URL", "PREFECT_UI_API_URL", "PREFECT_HOME"))}
    env["LEDGERGUARD_INTAKE_TOKEN"] = "test-token"
    env["LEDGERGUARD_FLOW_RUN_LIMIT"] = "3"
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "ledgerguard.cli", "up", "--home", str(home), "--clients", "5",
         "--port", str(ports["port"]), "--intake-port", str(ports["intake"]), "--smtp-port", str(ports["smtp"])],
        cwd=str(PROJECT_ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def running():
            assert process.poll() is None, (tmp_path / "up.log").read_text()
            path = home / "stack.json"
            if path.exists():
                state = json.loads(path.read_text(encoding="utf-8"))
                return state if state["status"] == "running" else None
            return None

        state = _wait(running, 240, "`ledgerguard up` to be running")
        components = state["components"]
        assert components["prefect"]["port"] == ports["port"]
        assert components["smtp_sink"]["port"] == ports["smtp"]
        assert (home / "agency" / "agency.yaml").exists()
        api = components["prefect"]["api_url"]
        assert httpx.get(f"{api}/health", timeout=5).status_code == 200
        deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
        assert {"ledger-loss", "backup-failure", "ledger-sweep", "backup-sweep", "resolve-incident",
                "page-duty-lead"} <= {d["name"] for d in deployments}
        if components.get("intake", {}).get("running"):
            assert components["intake"]["port"] == ports["intake"]
            probes: list[str] = []

            def healthy():
                # A readiness probe may answer 503 while the register is busy starting; it
                # must turn 200 soon after, and its answers are kept for the failure message.
                answer = httpx.get(f"{components['intake']['url']}/healthz", timeout=5)
                probes.append(f"{answer.status_code} {answer.text[:300]}")
                return answer.status_code == 200

            try:
                _wait(healthy, 30, "the intake's /healthz to answer 200")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; answers: {probes[-3:]}") from None

        status = subprocess.run([sys.executable, "-m", "ledgerguard.cli", "status", "--home", str(home), "--json"],
                                cwd=str(PROJECT_ROOT), env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["status"] == "running" and report["up_alive"]
        assert report["components"]["prefect"]["healthy"] is True
        assert report["components"]["serve"]["alive"] is True
        # the flow-run limit from the settings reaches the runner of the serve child
        assert report["components"]["serve"]["flow_run_limit"] == 3
        cmdline = Path(f"/proc/{components['serve']['pid']}/cmdline").read_bytes().split(b"\0")
        assert cmdline[cmdline.index(b"--limit") + 1] == b"3"
        assert report["open_incidents"]["total"] == 0
        assert report["outbox"] is not None and "pending" in report["outbox"]
        text = subprocess.run([sys.executable, "-m", "ledgerguard.cli", "status", "--home", str(home)],
                              cwd=str(PROJECT_ROOT), env={**env, "COLUMNS": "250"}, capture_output=True, text=True, timeout=60)
        assert f"127.0.0.1:{ports['port']}" in text.stdout and "open incidents: 0" in text.stdout
        assert "at most 3 runs at once" in text.stdout

        serve_pid, server_pid = components["serve"]["pid"], components["prefect"]["pid"]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)
        took = time.monotonic() - started
        print(f"clean shutdown in {took:.1f} s")
        assert process.returncode == 0, (tmp_path / "up.log").read_text()
        final = json.loads((home / "stack.json").read_text(encoding="utf-8"))
        assert final["status"] == "stopped"
        from ledgerguard.stack import pid_alive

        assert not pid_alive(serve_pid) and not pid_alive(server_pid)
        output = (tmp_path / "up.log").read_text()
        order = [output.index(s) for s in ("relay: drained", "deployments: serve stopped", "Prefect server: stopped")]
        assert order == sorted(order)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        # The Prefect server and serve run in sessions of their own (so Ctrl-C reaches `up`
        # first); after a failed test they must not outlive it.
        state_file = home / "stack.json"
        if state_file.exists():
            from ledgerguard.stack import pid_alive

            for part in json.loads(state_file.read_text(encoding="utf-8")).get("components", {}).values():
                pid = part.get("pid") if isinstance(part, dict) else None
                if pid and pid != os.getpid() and pid_alive(pid):
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
        log.close()
