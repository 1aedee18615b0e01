"""Claim requests of the past month, already booked (healthy), and the claims work queue.

Each request has its e-invoice documents in ``claims/documents/<request_id>/`` and status
``booked``: the claim detectors find nothing to do on a fresh sample.
"""

from __future__ import annotations

import csv
from datetime import timedelta
from typing import Any

from ledgerguard.detectors.claims import write_request
from ledgerguard.sources import claims as src

NAME = "claims"


def generate(ctx) -> dict[str, Any]:
    agency = ctx.agency
    rng = ctx.rng(NAME)
    first = ctx.local_now.replace(day=1, hour=10, minute=0, second=0, microsecond=0)
    previous_month = first - timedelta(days=1)
    rows = []
    for n, cid in enumerate(rng.sample(agency.client_ids, min(3, len(agency.client_ids))), start=1):
        at = previous_month.replace(day=min(previous_month.day, 5 + 7 * n), hour=9 + n)
        rid = f"R{at:%Y%m%d}-{n:02d}"
        write_request(agency, rid, cid, at, claims=rng.randint(3, 8), unsupported=0, urgent=False, rng=rng,
                      status="booked")
        rows.append({"request_id": rid, "client_id": cid, "priority": "normal", "received_at": at.isoformat(),
                     "due_at": "", "status": "booked", "updated_at": (at + timedelta(days=2)).isoformat(), "note": ""})
    queue = src.queue_path(agency)
    queue.parent.mkdir(parents=True, exist_ok=True)
    with open(queue, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=src.QUEUE_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return {"requests": len(rows), "queue": str(queue)}
