"""Detector benchmarks; prints one JSON line.

    .venv/bin/python benchmarks/detectors.py [--rows 1000000] [--repeat 3]

``log``: the ``dlp.bulk_export`` detector, reading a generated 1,000,000-row DLP log through its
source adapter (typed columns, window filter, per-user sums, client/PII facts), against a plain
``pandas.read_csv`` of the same file in the same run. Target: ratio ≤ 2 (``ok``).

Each measurement is a function ``measure_<name>(args, workdir) -> dict`` listed in
:data:`MEASUREMENTS`; add another (e.g. the filing detector) by appending a function.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_RATIO = 2.0


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def write_dlp_log(path: Path, rows: int, now: datetime, client_ids: list[str], users: list[str],
                  seed: int = 7) -> None:
    """``rows`` DLP rows over the last 20 hours, vectorised; one user exports in bulk."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, 20 * 3600, rows))[::-1]
    # Local Asia/Shanghai wall time with its +08:00 offset, formatted in C (np.datetime_as_string).
    local = np.datetime64(int(now.timestamp()) + 8 * 3600, "s") - offsets.astype("timedelta64[s]")
    at = np.char.add(np.datetime_as_string(local, unit="s"), "+08:00")
    # Many staff exporting a little each; one of them exports in bulk.
    names = np.array([f"u{i:04d}" for i in range(max(1, rows // 500))] + users)
    user = names[rng.integers(0, len(names), rows)]
    user[rng.random(rows) < 0.01] = users[0]
    kinds = np.array(["ledger", "invoice", "tax_return", "payroll;id_number;bank_card"])
    df = pd.DataFrame({
        "at": at,
        "user": user,
        "action": np.array(["export", "download", "print", "export"])[rng.integers(0, 4, rows)],
        "rows": rng.integers(1, 3, rows),
        "client_ids": np.array(client_ids)[rng.integers(0, len(client_ids), rows)],
        "data_kinds": kinds[rng.integers(0, len(kinds), rows)],
        "destination": "local",
        "device_id": np.char.add("D-", user),
        "file": "export.xlsx",
    })
    df.to_csv(path, index=False)


def measure_log(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from ledgerguard.detectors import DetectionContext, get_detector
    from ledgerguard.sample import generate_agency

    now = datetime.now(timezone.utc)
    agency = generate_agency(workdir / "agency", clients=20, nights=1, seed=3, now=now)
    from ledgerguard.sources import logs as lg

    path = agency.data_file(*lg.DLP_LOG)
    users = list(dict.fromkeys(agency.clients["accountant_id"]))
    started = time.perf_counter()
    write_dlp_log(path, args.rows, now, agency.client_ids, users)
    generated = time.perf_counter() - started
    detector = get_detector("dlp.bulk_export")
    ctx = DetectionContext(agency=agency, resource="user:all", params={"min_rows": 5000}, now=now,
                           scratch_dir=workdir / "scratch")
    plain, frame = _best(lambda: pd.read_csv(path), args.repeat)
    assert len(frame) == args.rows
    timed, result = _best(lambda: detector.detect(ctx), args.repeat)
    ratio = timed / plain
    return {"detector": "dlp.bulk_export", "rows": args.rows, "file_mb": round(path.stat().st_size / 1e6, 1),
            "generate_s": round(generated, 3), "plain_read_csv_s": round(plain, 3),
            "detector_s": round(timed, 3), "ratio": round(ratio, 3), "target_ratio": TARGET_RATIO,
            "ok": ratio <= TARGET_RATIO, "found": result.found,
            "rows_exported": result.finding.facts.get("rows_exported") if result.found else None}


def measure_filing_tracker(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The filing detector on 2,000 clients × 12 periods (see detectors_filing.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from detectors_filing import measure_filing

    return measure_filing(workdir, repeat=args.repeat)


MEASUREMENTS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "log": measure_log, "filing": measure_filing_tracker}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=sorted(MEASUREMENTS), action="append")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"benchmark": "detectors"}
    with tempfile.TemporaryDirectory(prefix="lg-bench-detectors-") as tmp:
        for name, fn in MEASUREMENTS.items():
            if args.only and name not in args.only:
                continue
            workdir = Path(tmp) / name
            workdir.mkdir()
            out[name] = fn(args, workdir)
    out["ok"] = all(v.get("ok", True) for v in out.values() if isinstance(v, dict))
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
