"""The filing-tracker detector on a large tracker, beside a plain pandas read of the same file.

Builds an agency of 2,000 clients (no ledgers needed: the detector reads clients.csv and the
tracker) with a tracker of 12 periods (vat, surtax, iit monthly; cit quarterly) in a temporary
folder, plants a backlog on the October 2026 deadline day, and times
``filing.tracker_backlog`` (read + validate + backlog + 非正常户 run + facts) against
``pandas.read_csv`` of the same file. Prints one JSON line; the ratio is the figure that matters.

    python benchmarks/detectors_filing.py [--clients 2000] [--periods 12] [--repeat 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledgerguard.agency import load_agency  # noqa: E402
from ledgerguard.agency.models import CLIENT_COLUMNS, credit_code_check_char, org_code_check_char  # noqa: E402
from ledgerguard.calendar import SHANGHAI  # noqa: E402

NOW = datetime(2026, 10, 26, 10, 0, tzinfo=SHANGHAI)   # the October 2026 deadline day
LAST_PERIOD = (2026, 9)


def _periods(n: int) -> list[str]:
    year, month = LAST_PERIOD
    out = []
    for _ in range(n):
        out.append(f"{year}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def build(tmp_dir: Path, *, clients: int = 2000, periods: int = 12, seed: int = 1) -> tuple[Path, int]:
    """A small generated agency whose clients.csv is replaced by ``clients`` rows, and a tracker
    of ``periods`` periods. Returns (agency folder, tracker rows)."""
    from ledgerguard.sample import generate_agency

    root = Path(tmp_dir) / "agency"
    if root.exists():
        shutil.rmtree(root)
    generate_agency(root, clients=2, nights=1, seed=seed, now=NOW)
    rng = random.Random(seed)
    accountants = sorted({row["accountant_id"] for row in csv.DictReader(open(root / "clients.csv", encoding="utf-8"))})
    with open(root / "clients.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CLIENT_COLUMNS)
        w.writeheader()
        for i in range(1, clients + 1):
            body = f"{rng.randint(0, 10**8 - 1):08d}"
            first17 = "91310101" + body + org_code_check_char(body)
            w.writerow({"client_id": f"C{i:04d}", "name": f"基准测试客户{i}有限公司",
                        "credit_code": first17 + credit_code_check_char(first17), "tier": "basic",
                        "vip": "true" if i % 17 == 0 else "false", "accountant_id": accountants[i % len(accountants)],
                        "legal_rep": "", "phone": "", "employees": 5, "ledger_file": ""})
    rows = 0
    plist = _periods(periods)
    with open(root / "filing-tracker.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["client_id", "period", "tax", "status", "filed_at", "tax_due"])
        for p in plist:
            year, month = int(p[:4]), int(p[5:])
            filed_day = datetime(year + (month == 12), month % 12 + 1, 10, 15, 0, tzinfo=SHANGHAI)
            taxes = ["vat", "surtax", "iit"] + (["cit"] if month in (3, 6, 9, 12) else [])
            for i in range(1, clients + 1):
                for tax in taxes:
                    unfiled = p == plist[-1] and tax == "vat" and rng.random() < 0.05
                    w.writerow([f"C{i:04d}", p, tax, "unfiled" if unfiled else "filed",
                                "" if unfiled else (filed_day + timedelta(minutes=rng.randint(0, 7200))).isoformat(),
                                f"{rng.uniform(0, 30000):.2f}"])
                    rows += 1
    return root, rows


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_filing(tmp_dir, *, clients: int = 2000, periods: int = 12, repeat: int = 5) -> dict:
    """Time the filing detector against a plain pandas read of the same tracker; returns the JSON dict."""
    import pandas as pd

    from ledgerguard.detectors import DetectionContext, get_detector

    root, rows = build(Path(tmp_dir), clients=clients, periods=periods)
    agency = load_agency(root)
    path = agency.filing_tracker_path
    detector = get_detector("filing.tracker_backlog")
    ctx = DetectionContext(agency=agency, resource="filings:current", params={"warn_hours": [48, 24]}, now=NOW,
                           scratch_dir=Path(tmp_dir) / "scratch")
    result = detector.detect(ctx)           # warm-up (imports, calendar) and a sanity check
    if result.finding is None:
        raise RuntimeError(f"benchmark tracker did not fire the detector: {result.clear_reason}")
    detector_s = _median_seconds(lambda: detector.detect(ctx), repeat)
    baseline_s = _median_seconds(lambda: pd.read_csv(path, dtype=str, keep_default_na=False), repeat)
    return {"benchmark": "detectors_filing", "detector": detector.id, "clients": clients, "periods": periods,
            "rows": rows, "file_bytes": path.stat().st_size, "repeat": repeat,
            "detector_seconds": round(detector_s, 4), "detector_rows_per_s": round(rows / detector_s),
            "pandas_read_seconds": round(baseline_s, 4), "pandas_rows_per_s": round(rows / baseline_s),
            "ratio_to_pandas_read": round(detector_s / baseline_s, 2),
            "unfiled_returns": result.finding.facts["unfiled_returns"],
            "clients_affected": result.finding.facts["clients_affected"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--periods", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lg-bench-filing-") as tmp:
        print(json.dumps(measure_filing(tmp, clients=args.clients, periods=args.periods, repeat=args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
