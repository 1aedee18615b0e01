"""Alert → first email latency of the running stack, beside Prefect's own emit → run-start latency.

The whole stack runs as `ledgerguard up` in a child process (Prefect server on SQLite on a free
port, every deployment served with ``PREFECT_RUNNER_POLL_FREQUENCY=1``, relay, intake, SMTP sink)
on a temporary home with a sample agency. A second child serves a no-op flow with an event
trigger against the same server: the baseline is Prefect's own emit → flow-run start for it.

Each round, one at a time: emit a ``bench.noop.ping`` event and wait for the no-op run to start;
then break a fresh client's ledger with the ``ledger.delete_vouchers`` injector, POST one
Alertmanager alert for it and wait for the first email about ``ledger:<client>`` accepted by the
SMTP sink (the sink's own timestamp in the .eml file name); then wait until that client's
ledger-loss run is finished, so the next alert meets an idle stack. Prints one JSON line; the
figure that matters is the ratio to the baseline, and the goal is p95 ≤ 5 s.

    python benchmarks/latency.py [--alerts 50] [--clients 60]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledgerguard.embedded import stop_process_group  # noqa: E402 — after the path fix above
from ledgerguard.embedded import wait_until as wait_for  # noqa: E402

TOKEN = "bench-token-0123456789abcdef0123"
NOOP_EVENT = "bench.noop.ping"
NOOP_FLOW = "bench-noop"
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


# --- the stack, as `ledgerguard up` runs it -----------------------------------------------------


def api(method: str, url: str, *, attempts: int = 10, **kwargs) -> httpx.Response:
    """One Prefect API call, retried on SQLite's 503 "database is locked" like Prefect's client."""
    response = None
    for attempt in range(attempts):
        try:
            response = httpx.request(method, url, timeout=15, **kwargs)
        except httpx.HTTPError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
            continue
        if response.status_code != 503 or attempt == attempts - 1:
            return response
        time.sleep(0.5 * (attempt + 1))
    return response


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGERGUARD_", "PREFECT_"))}
    env.update({"LEDGERGUARD_HOME": str(home), "LEDGERGUARD_INTAKE_TOKENS": f"bench:{TOKEN}:alertmanager",
                "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
                "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    return env


class StackProcess:
    """`ledgerguard up` in a child process (its own session); stopped with SIGTERM as an operator would."""

    def __init__(self, home: Path, *, clients: int, env_extra: dict[str, str] | None = None,
                 serve_limit: int | None = None) -> None:
        self.home, self.clients, self.env_extra, self.serve_limit = home, clients, env_extra or {}, serve_limit
        self.process: subprocess.Popen | None = None
        self.state: dict = {}

    def start(self, timeout: float = 300) -> "StackProcess":
        from ledgerguard.embedded import free_port

        env = {**base_env(self.home), **self.env_extra}
        command = [sys.executable, "-m", "ledgerguard.cli", "up", "--home", str(self.home),
                   "--port", str(free_port()), "--intake-port", str(free_port()),
                   "--smtp-port", str(free_port()), "--clients", str(self.clients), "--poll", "1"]
        if self.serve_limit:
            command += ["--limit", str(self.serve_limit)]
        self._log = open(self.home / "up.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(command, env=env, cwd=str(ROOT), stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

        def running():
            if self.process.poll() is not None:
                raise RuntimeError(f"`ledgerguard up` exited with {self.process.returncode}; "
                                   f"see {self.home / 'up.log'}")
            path = self.home / "stack.json"
            try:
                state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            except ValueError:
                return None
            return state if state.get("status") == "running" else None

        self.state = wait_for(running, timeout=timeout, interval=0.5, what="`ledgerguard up`")
        return self

    @property
    def api_url(self) -> str:
        return self.state["components"]["prefect"]["api_url"]

    @property
    def intake_url(self) -> str:
        return self.state["components"]["intake"]["url"]

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process_group(self.process, signal.SIGTERM, timeout=90)
        # If `up` could not stop its own children, stop the ones it recorded (they are ours too).
        for name in ("prefect", "serve"):
            pid = self.state.get("components", {}).get(name, {}).get("pid")
            if pid and pid != os.getpid():
                try:
                    os.killpg(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self._log.close()


PG_ADMIN = os.environ.get("LEDGERGUARD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def create_pg_database(name: str, *, trgm: bool = False) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    if trgm:
        with psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    return name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sweep_specs():
    from deployments import DEPLOYMENTS

    return [s for s in DEPLOYMENTS if not s.triggers and s.schedules]


def pause_deployments(api_url: str, names: list[str]) -> None:
    """Pause deployments by name (their schedules stop making runs) through Prefect's API."""
    found = api("POST", f"{api_url}/deployments/filter", json={"deployments": {"name": {"any_": names}}}).json()
    for deployment in found:
        response = api("PATCH", f"{api_url}/deployments/{deployment['id']}", json={"paused": True})
        response.raise_for_status()
    # runs the schedules already made stay Scheduled; they are not ours to wait for
    missing = set(names) - {d["name"] for d in found}
    if missing:
        raise RuntimeError(f"deployments not found to pause: {sorted(missing)}")


def prepare_agency(home: Path, clients: int) -> None:
    from ledgerguard.sample.generator import generate_agency

    if not (home / "agency" / "agency.yaml").exists():
        generate_agency(home / "agency", clients=clients, nights=2, seed=11)


def client_ids(home: Path) -> list[str]:
    import csv

    with open(home / "agency" / "clients.csv", encoding="utf-8") as f:
        return [row["client_id"] for row in csv.DictReader(f)]


def break_ledger(home: Path, client_id: str, count: int = 8) -> str:
    from ledgerguard.agency import load_agency
    from ledgerguard.detectors import get_injector
    from ledgerguard.detectors.base import InjectionContext

    agency = load_agency(home / "agency")
    report = get_injector("ledger.delete_vouchers").inject(
        InjectionContext(agency=agency, resource=f"ledger:{client_id}", scratch_dir=home / "scratch"), count=count)
    return report.summary


def am_alert(client_id: str, n: int, *, status: str = "firing") -> dict:
    return {"status": status,
            "labels": {"alertname": "LedgerRowCountDrop", "client_id": client_id, "job": "ledger-exporter",
                       "instance": f"ledger-db-{n % 97}:9187", "severity": "critical", "replica": str(n)},
            "annotations": {"summary": f"客户 {client_id} 账套凭证数骤降", "description": f"bench alert {n}"},
            "startsAt": datetime.now(timezone.utc).isoformat(), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.bench/graph", "fingerprint": uuid.uuid4().hex[:16]}


def am_body(alerts: list[dict]) -> dict:
    labels = {"alertname": "LedgerRowCountDrop", "client_id": alerts[0]["labels"]["client_id"]}
    return {"version": "4", "groupKey": "{}:" + json.dumps(labels, sort_keys=True), "truncatedAlerts": 0,
            "status": "firing", "receiver": "ledgerguard", "groupLabels": labels, "commonLabels": labels,
            "commonAnnotations": {}, "externalURL": "http://alertmanager.bench:9093", "alerts": alerts}


# --- the SMTP sink's mail folder ----------------------------------------------------------------


class Mailbox:
    """New .eml files in the sink's folder: (accepted-at from the file name, subject)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: set[str] = set()
        self.mails: list[tuple[float, str, str]] = []  # (accepted epoch s, subject, file name)

    def poll(self) -> list[tuple[float, str, str]]:
        new = []
        if not self.folder.exists():
            return new
        for path in sorted(self.folder.glob("*.eml")):
            if path.name in self.seen:
                continue
            self.seen.add(path.name)
            stamp = datetime.strptime(path.name.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)
            with open(path, "rb") as f:
                message = email.message_from_binary_file(f, policy=email.policy.default)
            item = (stamp.timestamp(), str(message["Subject"] or ""), path.name)
            self.mails.append(item)
            new.append(item)
        return new

    def first_about(self, resource: str, since: float = 0.0) -> float | None:
        times = [t for t, subject, _ in self.mails if resource in subject and t >= since]
        return min(times) if times else None


# --- Prefect's own baseline: a no-op flow served with an event trigger --------------------------


def noop(i: int = 0) -> int:
    """The no-op flow body (wrapped by `prefect.flow` in `serve_noop`, loaded by entrypoint in runs)."""
    return i


if os.environ.get("LG_BENCH_NOOP_FLOW") == "1":  # in the no-op serve process and its flow-run children
    from prefect import flow as _flow

    noop = _flow(name=NOOP_FLOW)(noop)


def serve_noop() -> None:  # runs in its own process (`--serve-noop`)
    from prefect import serve
    from prefect.events import DeploymentEventTrigger

    trigger = DeploymentEventTrigger(expect={NOOP_EVENT}, match={"prefect.resource.id": "bench.noop.*"},
                                     parameters={"i": "{{ event.payload.i }}"})
    serve(noop.to_deployment(name=NOOP_FLOW, triggers=[trigger]), print_starting_message=False)


class NoopServer:
    def __init__(self, stack: StackProcess) -> None:
        self.stack = stack
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "NoopServer":
        from ledgerguard.embedded import prefect_environment

        prefect = self.stack.state["components"]["prefect"]
        env = {**base_env(self.stack.home),
               **prefect_environment(prefect_home=self.stack.home / "prefect", port=prefect["port"]),
               "PREFECT_RUNNER_POLL_FREQUENCY": "1", "LG_BENCH_NOOP_FLOW": "1"}
        self._log = open(self.stack.home / "noop-serve.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-noop"], env=env,
                                        cwd=str(ROOT), stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"no-op serve exited; see {self.stack.home / 'noop-serve.log'}")
            r = api("POST", f"{self.stack.api_url}/deployments/filter",
                    json={"deployments": {"name": {"any_": [NOOP_FLOW]}}})
            return r.status_code == 200 and any(not d.get("paused") for d in r.json())

        wait_for(ready, timeout=timeout, interval=0.5, what="the no-op deployment")
        time.sleep(2)  # the trigger reaches the automation cache of the server
        return self

    def stop(self) -> None:
        stop_process_group(self.process, signal.SIGINT, timeout=20)
        if self.process is not None:
            self._log.close()


def iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def noop_round(api_url: str, i: int, timeout: float = 60) -> float:
    """Emit one event; seconds until Prefect records the triggered no-op run's start."""
    t0 = time.time()
    event = {"id": str(uuid.uuid4()), "occurred": datetime.now(timezone.utc).isoformat(), "event": NOOP_EVENT,
             "resource": {"prefect.resource.id": f"bench.noop.{i}"}, "payload": {"i": i}}
    r = api("POST", f"{api_url}/events", json=[event])
    assert r.status_code < 300, r.text

    def started():
        runs = api("POST", f"{api_url}/flow_runs/filter",
                   json={"flows": {"name": {"any_": [NOOP_FLOW]}}, "sort": "START_TIME_DESC", "limit": 10}).json()
        for run in runs:
            if run.get("parameters", {}).get("i") == i and run.get("start_time"):
                return iso(run["created"]) - t0, iso(run["start_time"]) - t0
        return None

    return wait_for(started, timeout=timeout, interval=0.1, what=f"no-op run {i} to start")


def flow_runs(api_url: str, deployment: str, **extra) -> list[dict]:
    r = api("POST", f"{api_url}/flow_runs/filter",
            json={"deployments": {"name": {"any_": [deployment]}}, "limit": 200, **extra})
    r.raise_for_status()
    return r.json()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_s": round(statistics.median(values), 3), "p95_s": round(pct(values, 95), 3),
            "max_s": round(max(values), 3)}


# --- the benchmark --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--clients", type=int, default=0, help="sample agency size (default alerts + 10)")
    parser.add_argument("--goal", type=float, default=5.0, help="p95 goal in seconds")
    parser.add_argument("--timeout", type=float, default=90.0, help="per alert, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--prefect-db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="Prefect's own database (postgresql: a fresh database on LEDGERGUARD_BENCH_PG)")
    parser.add_argument("--with-sweeps", action="store_true",
                        help="leave the scheduled sweeps running (by default they are paused, so each "
                             "round measures one alert on an otherwise idle stack)")
    parser.add_argument("--serve-noop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_noop:
        serve_noop()
        return 0
    if args.alerts < 1:
        parser.error("--alerts must be ≥ 1")
    clients = max(args.clients, args.alerts + 10)

    home = Path(tempfile.mkdtemp(prefix="lg-latency-")) / "home"
    home.mkdir()
    t_setup = time.monotonic()
    prepare_agency(home, clients)
    ids = client_ids(home)[: args.alerts]
    env: dict[str, str] = {}
    databases: list[str] = []
    if args.prefect_db == "postgresql":
        name = f"lg_latency_prefect_{uuid.uuid4().hex[:8]}"
        databases.append(create_pg_database(name, trgm=True))
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"postgresql+asyncpg://{PG_ADMIN.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    stack = StackProcess(home, clients=clients, env_extra=env).start()
    noop = NoopServer(stack)
    alert_s: list[float] = []
    noop_s: list[float] = []
    noop_created_s: list[float] = []
    alert_created_s: list[float] = []
    alert_started_s: list[float] = []
    errors: list[str] = []
    mailbox = Mailbox(home / "mail")
    try:
        noop.start()
        if not args.with_sweeps:
            pause_deployments(stack.api_url, [s.name for s in sweep_specs()])
        setup_s = time.monotonic() - t_setup
        noop_round(stack.api_url, -1)  # warm: first run of each path imports more
        with httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=30) as intake:
            for i, client_id in enumerate(ids):
                alert_started_s.append(None)
                created, started = noop_round(stack.api_url, i)
                noop_s.append(started)
                noop_created_s.append(created)
                mailbox.poll()
                break_ledger(home, client_id)
                before = {r["id"] for r in flow_runs(stack.api_url, "ledger-loss")}
                t0 = time.time()
                r = intake.post("/api/v1/alertmanager", json=am_body([am_alert(client_id, i)]))
                if r.status_code != 202:
                    errors.append(f"{client_id}: intake answered {r.status_code}: {r.text[:200]}")
                    continue
                resource = f"ledger:{client_id}"

                def first_mail():
                    mailbox.poll()
                    return mailbox.first_about(resource, since=t0 - 1)

                try:
                    alert_s.append(wait_for(first_mail, timeout=args.timeout, interval=0.05,
                                            what=f"the first email about {resource}") - t0)
                except TimeoutError as exc:
                    errors.append(str(exc))

                def finished():
                    runs = [x for x in flow_runs(stack.api_url, "ledger-loss") if x["id"] not in before]
                    return runs and all(x["state_type"] in TERMINAL for x in runs) and runs

                try:  # the next alert meets an idle stack: "one at a time"
                    runs = wait_for(finished, timeout=args.timeout, interval=0.3, what=f"{resource}'s run to end")
                    first = min(runs, key=lambda x: x["created"])
                    alert_created_s.append(iso(first["created"]) - t0)
                    if first.get("start_time"):
                        alert_started_s[-1] = iso(first["start_time"]) - t0
                    errors += [f"{resource}: run {x['id']} {x['state_type']}" for x in runs
                               if x["state_type"] != "COMPLETED"]
                except TimeoutError as exc:
                    errors.append(str(exc))
        failed = api("POST", f"{stack.api_url}/flow_runs/count",
                     json={"flow_runs": {"state": {"type": {"any_": ["FAILED", "CRASHED"]}}}}).json()
    finally:
        noop.stop()
        stack.stop()
        for name in databases:
            try:
                drop_pg_database(name)
            except Exception as exc:  # noqa: BLE001
                print(f"could not drop database {name}: {exc}", file=sys.stderr)
    if not alert_s or not noop_s:
        print(json.dumps({"benchmark": "latency", "ok": False, "errors": errors[:10]}))
        return 1
    alert, base = summary(alert_s), summary(noop_s)
    started_s = [x for x in alert_started_s if x is not None]
    # The slow rounds, to tell a slow flow from a slow machine (the no-op of the same round).
    rounds = [{"round": i, "first_email_s": round(a, 3), "run_start_s": round(st, 3) if st is not None else None,
               "noop_start_s": round(n, 3)}
              for i, (a, st, n) in enumerate(zip(alert_s, alert_started_s, noop_s))]
    slowest = sorted(rounds, key=lambda r: r["first_email_s"], reverse=True)[:5]
    result = {
        "benchmark": "latency",
        "alerts": args.alerts, "clients": clients, "register": "sqlite", "prefect_db": args.prefect_db,
        "alert_post_to_first_email": alert,
        "prefect_emit_to_noop_run_start": base,
        "breakdown_p50_s": {
            "alert_post_to_ledger_loss_run_created": round(statistics.median(alert_created_s), 3) if alert_created_s else None,
            "alert_post_to_ledger_loss_run_start": round(statistics.median(started_s), 3) if started_s else None,
            "noop_emit_to_run_created": round(statistics.median(noop_created_s), 3)},
        "ratio_p50": round(alert["p50_s"] / base["p50_s"], 2),
        "ratio_p95": round(alert["p95_s"] / base["p95_s"], 2),
        "alert_post_to_ledger_loss_run_start": summary(started_s) if started_s else None,
        "slowest_rounds": slowest,
        "sweeps": "running" if args.with_sweeps else "paused",
        "goal_p95_s": args.goal,
        "failed_flow_runs": failed,
        "errors": errors[:10], "error_count": len(errors),
        "setup_s": round(setup_s, 1),
        "ok": alert["n"] == args.alerts and alert["p95_s"] <= args.goal and not errors,
    }
    print(json.dumps(result, ensure_ascii=False))
    if not args.keep:
        import shutil

        shutil.rmtree(home.parent, ignore_errors=True)
    else:
        print(f"home kept: {home}", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
