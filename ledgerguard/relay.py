"""The outbox relay: deliver register outbox rows to Prefect's events API over plain HTTP.

Prefect-free on purpose (httpx only). The intake writes every signal to the register and its
outbox in one transaction before it answers 202; this loop claims a batch, POSTs the events as
one JSON array to ``<PREFECT_API_URL>/events`` (Prefect OSS answers 204) and marks them
delivered. When Prefect is down, times out or answers 5xx (503 "database is locked" on SQLite
happens), the rows are marked failed with an exponential backoff and claimed again later: never
dropped. Each row's id is the event id, so a re-post after a lost response is the same event;
Prefect stores an event id once and its triggers skip an id they have already processed.

A batch that Prefect rejects with a 4xx (an event it cannot parse) is split and posted one by
one, so a single bad row cannot hold up the others; the bad row stays failed, with Prefect's
answer as its error, parked for a person to look at (``ledgerguard status`` counts them).

The claim is committed before the POST (so the register is never locked while Prefect is slow);
run one relay per register. A crash between POST and mark re-delivers the same event id.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import httpx

logger = logging.getLogger("ledgerguard.relay")

BASE_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0
NEVER_PARK = 2**31 - 1


@dataclass
class RelayResult:
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def claimed(self) -> int:
        return self.delivered + self.failed


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff after ``attempts`` failed deliveries: 1 s, 2 s, 4 s … capped at 5 min."""
    return min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * (2 ** max(0, int(attempts or 0))))


def _session_factory(engine_or_runtime):
    """A context manager factory for register sessions from a Runtime or an Engine."""
    if hasattr(engine_or_runtime, "session"):
        return engine_or_runtime.session
    from ledgerguard.register.db import session_scope

    return lambda: session_scope(engine_or_runtime)


def _post(http: httpx.Client, url: str, events: list[dict]) -> tuple[str, str]:
    """('ok' | 'retry' | 'rejected', detail) for one POST of ``events``."""
    try:
        response = http.post(url, json=events)
    except httpx.HTTPError as exc:
        return "retry", f"{type(exc).__name__}: {exc}"
    if response.status_code < 300:
        return "ok", str(response.status_code)
    detail = f"HTTP {response.status_code}: {response.text[:300]}"
    if response.status_code >= 500 or response.status_code in (408, 409, 425, 429):
        return "retry", detail
    return "rejected", detail


def relay_once(*, engine_or_runtime, api_url: str, http: httpx.Client | None = None,
               batch: int = 100) -> RelayResult:
    """Claim up to ``batch`` outbox rows, POST them to Prefect and mark each delivered or failed."""
    from ledgerguard.register import service as outbox

    sessions = _session_factory(engine_or_runtime)
    with sessions() as db_session:
        items = list(outbox.claim_outbox_batch(db_session=db_session, limit=batch))
        claimed = [(item.id, item.payload, int(item.attempts or 0)) for item in items]
    result = RelayResult()
    if not claimed:
        return result

    own_http = http is None
    http = http or httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0))
    url = f"{api_url.rstrip('/')}/events"
    try:
        status, detail = _post(http, url, [payload for _, payload, _ in claimed])
        outcomes: list[tuple[str, str, str, int]] = []
        if status == "rejected" and len(claimed) > 1:
            for item_id, payload, attempts in claimed:  # isolate the row Prefect cannot take
                one_status, one_detail = _post(http, url, [payload])
                outcomes.append((item_id, one_status, one_detail, attempts))
        else:
            outcomes = [(item_id, status, detail, attempts) for item_id, _, attempts in claimed]
    finally:
        if own_http:
            http.close()

    with sessions() as db_session:
        for item_id, status, detail, attempts in outcomes:
            if status == "ok":
                outbox.mark_outbox_delivered(db_session=db_session, item_id=item_id)
                result.delivered += 1
                continue
            if status == "rejected":
                # Prefect will never take this one: keep it, parked, for a person to look at.
                outbox.park_outbox(db_session=db_session, item_id=item_id, error=detail)
            else:
                # Prefect down or busy: retry for as long as it takes, never park or drop.
                outbox.mark_outbox_failed(db_session=db_session, item_id=item_id, error=detail,
                                          retry_in_seconds=backoff_seconds(attempts), max_attempts=NEVER_PARK)
            result.failed += 1
            if detail not in result.errors:
                result.errors.append(detail)
    if result.failed:
        logger.warning("relay: %d delivered, %d failed (%s)", result.delivered, result.failed,
                       "; ".join(result.errors)[:500])
    return result


def drain(*, engine_or_runtime, api_url: str, http: httpx.Client | None = None, batch: int = 100,
          timeout: float = 10.0) -> RelayResult:
    """Relay until nothing is due or a delivery fails (used at shutdown); rows left stay pending."""
    total = RelayResult()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = relay_once(engine_or_runtime=engine_or_runtime, api_url=api_url, http=http, batch=batch)
        total.delivered += result.delivered
        total.failed += result.failed
        total.errors += [e for e in result.errors if e not in total.errors]
        if result.claimed == 0 or result.failed:
            break
    return total


def run_relay_forever(stop_event: threading.Event, *, engine_or_runtime, api_url: str,
                      poll_seconds: float = 0.5, batch: int = 100, on_result=None) -> RelayResult:
    """Relay until ``stop_event`` is set; a full batch is followed at once by the next one."""
    total = RelayResult()
    with httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0)) as http:
        while not stop_event.is_set():
            try:
                result = relay_once(engine_or_runtime=engine_or_runtime, api_url=api_url, http=http,
                                    batch=batch)
            except Exception:  # noqa: BLE001 — a register hiccup must not end the relay
                logger.exception("relay: pass failed; retrying")
                stop_event.wait(max(poll_seconds, 1.0))
                continue
            total.delivered += result.delivered
            total.failed += result.failed
            if on_result is not None and result.claimed:
                on_result(result)
            if result.claimed >= batch and not result.failed:
                continue
            stop_event.wait(poll_seconds)
    return total
