"""The outbox relay against a real Prefect server: delivered, retried while it is down, each once."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import httpx
import pytest

pytestmark = pytest.mark.prefect


def _event(marker: str) -> dict:
    return {"occurred": datetime.now(timezone.utc).isoformat(), "event": "ledgerguard.signal.change",
            "resource": {"prefect.resource.id": f"ledgerguard.signal.ledger_loss.relay-{marker}",
                         "ledgerguard.emergency_type": "ledger_loss", "ledgerguard.dedup_key": f"relay-{marker}"},
            "payload": {"signal_id": None, "emergency_type": "ledger_loss", "request": None}}


def _stored(api_url: str, event_ids: list[str], *, expect: int, timeout: float = 30) -> int:
    """How many of ``event_ids`` Prefect has stored (its persister writes in batches: poll)."""
    deadline = time.monotonic() + timeout
    total = -1
    while time.monotonic() < deadline:
        response = httpx.post(f"{api_url}/events/filter", json={"filter": {"id": {"id": event_ids}}}, timeout=10)
        if response.status_code == 200:
            total = response.json()["total"]
            if total >= expect:
                return total
        time.sleep(0.5)
    return total


def _enqueue(runtime, n: int) -> list[str]:
    from ledgerguard.register import service as register

    ids = []
    with runtime.session() as db_session:
        for i in range(n):
            item = register.enqueue_outbox(db_session=db_session, payload=_event(f"{uuid.uuid4().hex[:8]}-{i}"))
            ids.append(item.payload["id"])
    return ids


def test_backoff_doubles_and_is_capped():
    from ledgerguard.relay import MAX_BACKOFF_SECONDS, backoff_seconds

    assert [backoff_seconds(a) for a in range(4)] == [1, 2, 4, 8]
    assert backoff_seconds(40) == MAX_BACKOFF_SECONDS


def test_outbox_rows_reach_prefect_and_survive_a_server_outage_each_once(lg_home, tmp_path):
    from ledgerguard.embedded import PrefectServer, free_port
    from ledgerguard.register import service as register
    from ledgerguard.relay import relay_once
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    server = PrefectServer(prefect_home=tmp_path / "prefect", port=free_port()).start()
    try:
        first = _enqueue(runtime, 3)
        result = relay_once(engine_or_runtime=runtime, api_url=server.api_url)
        assert (result.delivered, result.failed) == (3, 0)
        assert _stored(server.api_url, first, expect=3) == 3

        server.stop()
        second = _enqueue(runtime, 2)
        down = relay_once(engine_or_runtime=runtime, api_url=server.api_url)
        assert (down.delivered, down.failed) == (0, 2)
        with runtime.session() as db_session:
            rows = [r for r in register.list_outbox(db_session=db_session) if r.payload["id"] in second]
            assert all(r.status == "failed" and r.attempts == 1 and r.last_error for r in rows)
            assert all(r.next_attempt_at > datetime.now(timezone.utc) for r in rows)
        # Backing off: nothing is claimed again at once.
        assert relay_once(engine_or_runtime=runtime, api_url=server.api_url).claimed == 0

        server.start()
        deadline = time.monotonic() + 30
        delivered = 0
        while delivered < 2 and time.monotonic() < deadline:
            delivered += relay_once(engine_or_runtime=runtime, api_url=server.api_url).delivered
            time.sleep(0.3)
        assert delivered == 2
        assert _stored(server.api_url, first + second, expect=5) == 5
        with runtime.session() as db_session:
            stats = register.outbox_stats(db_session=db_session)
        assert stats["delivered"] == 5 and stats["due"] == 0

        # A re-post of the same event id (a crash between POST and mark) is stored once.
        again = httpx.post(f"{server.api_url}/events", json=[{**_event("again"), "id": first[0]}], timeout=10)
        assert again.status_code == 204
        time.sleep(3)  # past the persister's flush
        assert _stored(server.api_url, [first[0]], expect=1) == 1
    finally:
        server.stop()


def test_a_row_prefect_rejects_is_parked_and_does_not_hold_up_the_others(lg_home, tmp_path):
    from ledgerguard.embedded import PrefectServer, free_port
    from ledgerguard.register import service as register
    from ledgerguard.relay import relay_once
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    good = _enqueue(runtime, 2)
    with runtime.session() as db_session:
        bad = register.enqueue_outbox(db_session=db_session, payload={"event": "x", "resource": {}}).id
    server = PrefectServer(prefect_home=tmp_path / "prefect", port=free_port()).start()
    try:
        result = relay_once(engine_or_runtime=runtime, api_url=server.api_url)
        assert (result.delivered, result.failed) == (2, 1)
        assert _stored(server.api_url, good, expect=2) == 2
        with runtime.session() as db_session:
            assert register.get_outbox_item(db_session=db_session, item_id=bad).status == "parked"
    finally:
        server.stop()
