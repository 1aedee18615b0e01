"""A healthy certificate / UKey inventory: every client has a 税务UKey and an 电子营业执照, most a
CA证书 too, all valid for at least 90 more days (beyond any filing deadline in sight)."""

from __future__ import annotations

import csv
from datetime import timedelta
from typing import Any

from ledgerguard.sources import certificates as certs

NAME = "certificates"
KINDS = ["税务UKey", "电子营业执照", "CA证书"]


def generate(ctx) -> dict[str, Any]:
    rng = ctx.rng(NAME)
    agency = ctx.agency
    today = ctx.local_now.date()
    path = agency.data_file(*certs.INVENTORY)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for cid, rep in zip(agency.clients["client_id"], agency.clients["legal_rep"]):
        kinds = KINDS if rng.random() < 0.7 else KINDS[:2]
        for kind in kinds:
            rows.append({"client_id": cid, "kind": kind, "serial": f"{rng.getrandbits(48):012X}",
                         "not_after": (today + timedelta(days=rng.randint(90, 900))).isoformat(),
                         "holder": rep or cid})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=certs.INVENTORY_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return {"credentials": len(rows)}
