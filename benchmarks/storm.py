"""Alert storm: N Alertmanager alerts in S seconds across G groups, against the running stack.

`ledgerguard up` runs in a child process on a temporary home (register on SQLite by default, or
on a fresh PostgreSQL database with ``--register postgresql``; Prefect's own server stays on
SQLite unless ``--prefect-db postgresql``). One client ledger per group is really broken first
(``ledger.delete_vouchers``), so each group is a real incident. Alerts go out paced over the
window, ``--batch`` alerts per Alertmanager webhook (all of one group), from a bounded pool of
httpx clients; a 503 (the register could not be written) is retried with backoff, as
Alertmanager does. Then it waits for the stack to settle and checks:

- exactly G incidents in the register;
- every alert sent is a signal in the register, every request ended in a 202;
- zero Failed/Crashed flow runs in Prefect's API;
- the time from the storm's start until the last group's first email in the SMTP sink.

    python benchmarks/storm.py [--alerts 10000] [--seconds 60] [--groups 20] [--register sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import (  # noqa: E402 — the shared stack helpers
    TOKEN,
    create_pg_database,
    drop_pg_database,
    TERMINAL,
    Mailbox,
    StackProcess,
    am_alert,
    am_body,
    api,
    break_ledger,
    client_ids,
    prepare_agency,
)

async def send_storm(url: str, groups: list[str], *, alerts: int, seconds: float, batch: int,
                     concurrency: int, max_attempts: int = 30, deadline_s: float = 600) -> dict:
    """Send ``alerts`` in webhooks of ``batch`` alerts, paced evenly over ``seconds``."""
    batches: list[tuple[float, str, int]] = []  # (send at, client, alerts in it)
    n_batches = (alerts + batch - 1) // batch
    for b in range(n_batches):
        size = min(batch, alerts - b * batch)
        batches.append((seconds * b / n_batches, groups[b % len(groups)], size))
    queue: asyncio.Queue = asyncio.Queue()
    for item in batches:
        queue.put_nowait(item)
    stats = {"requests": 0, "accepted_202": 0, "alerts_accepted": 0, "retries_503": 0, "retries_other": 0,
             "gave_up": 0, "statuses": {}, "max_attempts_seen": 1, "late_s_max": 0.0}
    start = time.monotonic()
    hard_deadline = start + deadline_s
    counter = iter(range(10**9))

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                                     timeout=httpx.Timeout(30.0, connect=5.0)) as client:
            while True:
                try:
                    at, client_id, size = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                delay = start + at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                stats["late_s_max"] = max(stats["late_s_max"], -delay)
                body = am_body([am_alert(client_id, next(counter)) for _ in range(size)])
                stats["requests"] += 1
                backoff = 0.25
                for attempt in range(1, max_attempts + 1):
                    status = None
                    try:
                        r = await client.post("/api/v1/alertmanager", json=body)
                        status = r.status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    stats["statuses"][str(status)] = stats["statuses"].get(str(status), 0) + 1
                    if status == 202:
                        stats["accepted_202"] += 1
                        stats["alerts_accepted"] += size
                        stats["max_attempts_seen"] = max(stats["max_attempts_seen"], attempt)
                        break
                    if attempt == max_attempts or time.monotonic() > hard_deadline or (
                            isinstance(status, int) and 400 <= status < 500):
                        stats["gave_up"] += 1
                        break
                    stats["retries_503" if status == 503 else "retries_other"] += 1
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, 8.0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    stats["send_s"] = round(time.monotonic() - start, 2)
    return stats


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10, help="alerts per Alertmanager webhook")
    parser.add_argument("--concurrency", type=int, default=8, help="httpx clients sending at once")
    parser.add_argument("--register", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--prefect-db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--settle", type=float, default=600, help="seconds to wait for the stack to settle")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="lg-storm-")) / "home"
    home.mkdir()
    prepare_agency(home, max(args.groups + 5, 30))
    groups = client_ids(home)[: args.groups]
    for client_id in groups:
        break_ledger(home, client_id)

    env: dict[str, str] = {}
    databases: list[str] = []
    tag = uuid.uuid4().hex[:8]
    if args.register == "postgresql":
        databases.append(create_pg_database(f"lg_storm_{tag}"))
        env["LEDGERGUARD_REGISTER_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/lg_storm_{tag}"
    if args.prefect_db == "postgresql":
        databases.append(create_pg_database(f"lg_storm_prefect_{tag}", trgm=True))
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = (
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/lg_storm_prefect_{tag}")

    stack = StackProcess(home, clients=len(groups), env_extra=env)
    mailbox = Mailbox(home / "mail")
    result: dict = {"benchmark": "storm", "alerts": args.alerts, "seconds": args.seconds, "groups": args.groups,
                    "batch": args.batch, "concurrency": args.concurrency, "register": args.register,
                    "prefect_db": args.prefect_db}
    try:
        stack.start()
        result["flow_run_limit"] = stack.state["components"]["serve"].get("flow_run_limit")
        from sqlalchemy import create_engine, text

        register_url = env.get("LEDGERGUARD_REGISTER_URL") or f"sqlite:///{home / 'register.sqlite'}"
        engine = create_engine(register_url)
        t0 = time.time()
        sent = asyncio.run(send_storm(stack.intake_url, groups, alerts=args.alerts, seconds=args.seconds,
                                      batch=args.batch, concurrency=args.concurrency))
        result["sender"] = sent

        def first_emails() -> dict[str, float]:
            mailbox.poll()
            return {c: t for c in groups if (t := mailbox.first_about(f"ledger:{c}", since=t0 - 1)) is not None}

        def settled() -> bool:
            with engine.connect() as conn:
                pending = conn.execute(text("SELECT count(*) FROM outbox WHERE status IN ('pending','failed')"
                                            )).scalar()
            runs = api("POST", f"{stack.api_url}/flow_runs/filter",
                       json={"flow_runs": {"state": {"type": {"not_any_": list(TERMINAL)}}}, "limit": 200})
            active = [r for r in runs.json() if r.get("deployment_id")] if runs.status_code == 200 else [1]
            # scheduled sweeps in the future don't count: only runs due now or running
            active = [r for r in active if r == 1 or r["state_type"] in ("RUNNING", "PENDING")
                      or (r["state_type"] == "SCHEDULED" and r.get("next_scheduled_start_time", "") <=
                          time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()))]
            return pending == 0 and not active and len(first_emails()) == len(groups)

        settle_deadline = time.monotonic() + args.settle
        while time.monotonic() < settle_deadline and not settled():
            time.sleep(1.0)
        result["settle_s"] = round(time.time() - t0, 1)
        emails = first_emails()
        with engine.connect() as conn:
            # Signals the intake accepted carry their action; the flow's own record of the signal it
            # ran for (status/action NULL) is not an alert and is counted apart.
            signals = conn.execute(text("SELECT count(*) FROM signals WHERE source = 'alertmanager' "
                                        "AND action IS NOT NULL")).scalar()
            by_status = dict(conn.execute(text("SELECT coalesce(status, 'recorded_by_flow'), count(*) FROM signals "
                                               "WHERE source = 'alertmanager' GROUP BY status")).all())
            incidents = conn.execute(text("SELECT count(*) FROM incidents")).scalar()
            ledger_incidents = conn.execute(text(
                "SELECT count(DISTINCT dedup_key) FROM incidents WHERE emergency_type = 'ledger_loss'")).scalar()
            outbox = dict(conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY status")).all())
        engine.dispose()
        counts = {}
        for state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED", "RUNNING", "PENDING"):
            counts[state] = api("POST", f"{stack.api_url}/flow_runs/count", json={
                "flow_runs": {"state": {"type": {"any_": [state]}}}}).json()
        ledger_runs = api("POST", f"{stack.api_url}/flow_runs/count", json={
            "deployments": {"name": {"any_": ["ledger-loss"]}}}).json()
        requests_needed = (args.alerts + args.batch - 1) // args.batch
        result.update({
            "incidents": incidents, "ledger_loss_incidents": ledger_incidents,
            "signals_in_register": signals, "signals_by_status": by_status, "alerts_sent": args.alerts,
            "requests_202": sent["accepted_202"], "requests": requests_needed, "outbox": outbox,
            "flow_runs": counts, "ledger_loss_runs": ledger_runs,
            "groups_with_email": len(emails),
            "last_group_first_email_s": round(max(emails.values()) - t0, 1) if emails else None,
            "first_group_first_email_s": round(min(emails.values()) - t0, 1) if emails else None,
        })
        result["checks"] = {
            "exactly_groups_incidents": incidents == args.groups,
            "every_alert_in_register": signals == args.alerts == sent["alerts_accepted"],
            "every_request_202": sent["accepted_202"] == requests_needed and sent["gave_up"] == 0,
            "zero_failed_flow_runs": counts["FAILED"] == 0 and counts["CRASHED"] == 0,
            "every_group_emailed": len(emails) == args.groups,
        }
        result["ok"] = all(result["checks"].values())
    finally:
        stack.stop()
        for name in databases:
            try:
                drop_pg_database(name)
            except Exception as exc:  # noqa: BLE001
                print(f"could not drop database {name}: {exc}", file=sys.stderr)
    print(json.dumps(result, ensure_ascii=False, default=str))
    if not args.keep:
        import shutil

        shutil.rmtree(home.parent, ignore_errors=True)
    else:
        print(f"home kept: {home}", file=sys.stderr)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
