"""The worked scenarios of ``shared/domain/scenarios.md``, planted into a sample agency.

Each scenario generates an agency of its size at its own moment ("as of"), breaks the data the
way the scenario describes through the drill injectors, and names the flow request that should
find it — with ``observed_at`` set to that moment, so detection judges the data as of then.
Nothing here passes facts to the classifier: the detectors must find them in the files.

    ledgerguard sample --scenario A            # plant scenario A into <home>/agency
    ledgerguard run emergency etax_outage default --as-of 2026-10-26T16:40:00+08:00
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from ledgerguard.agency import load_agency
from ledgerguard.detectors import InjectionContext, get_injector
from ledgerguard.response.models import (
    AnnualDeadlineRequest,
    BackupFailureRequest,
    EtaxOutageRequest,
    LedgerLossRequest,
    RansomwareRequest,
    RunOptions,
    UrgentClaimRequest,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass
class PlantedScenario:
    """What was planted, and the request that should find it."""

    scenario: str
    emergency_type: str
    request: RunOptions
    as_of: datetime
    expected_level: int
    planted: dict[str, Any]

    @property
    def cli(self) -> str:
        """The command that runs the flow on it."""
        if self.emergency_type == "ledger_loss":
            return f"ledgerguard run ledger-loss --client {self.request.client_id}"
        if self.emergency_type == "backup_failure":
            return f"ledgerguard run backup-failure --target {self.request.backup_target}"
        value = getattr(self.request, type(self.request).resource_field)
        return f"ledgerguard run emergency {self.emergency_type} {value} --as-of {self.as_of.isoformat()}"


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    emergency_type: str
    clients: int
    expected_level: int
    at: datetime | None  # fixed moment of the scenario; None: "now"
    plant: Callable[[Any, datetime], tuple[RunOptions, dict[str, Any]]]

    def moment(self) -> datetime:
        return self.at or datetime.now(timezone.utc).replace(microsecond=0)


def _inject(agency, injector_id: str, resource: str, now: datetime, **kwargs: Any):
    ctx = InjectionContext(agency=agency, resource=resource, now=now, seed=7,
                           scratch_dir=agency.root.parent / "scratch")
    return get_injector(injector_id).inject(ctx, **kwargs)


def _plain_client(agency) -> str:
    """A client that is not a VIP (a VIP bumps the level one step)."""
    return next(c for c in agency.client_ids if not agency.is_vip(c))


# -- A. e-tax outage on deadline day ---------------------------------------------------------------

def _plant_a(agency, now: datetime):
    from ledgerguard.sample.datasets.probes import plant_etax_outage

    plant = plant_etax_outage(agency, now=now, unfiled=37, minutes=180, interval_minutes=5)
    return (EtaxOutageRequest(portal=plant["portal"], observed_at=now, source="scenario", requested_by="scenario-A"),
            {"portal": plant["portal"], "period": plant["period"], "unfiled_clients": len(plant["unfiled_clients"])})


# -- B. ransomware on the self-hosted bookkeeping server -------------------------------------------

def _plant_b(agency, now: datetime):
    # About 4,100 people on the payroll of the 85 clients (the scenario's figure).
    path = agency.clients_path
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
        fields = list(rows[0])
    total, count = 4100, len(rows)
    for i, row in enumerate(rows):
        row["employees"] = str(total // count + (1 if i < total % count else 0))
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    agency = load_agency(agency.root)
    resource = "fileserver:bookkeeping"
    _inject(agency, "backup.stale", resource, now, hours_old=72)
    renamed = _inject(agency, "files.inject_mass_rename", resource, now, count=14_000, minutes=10,
                      extension=".locked", ended_minutes_ago=1)
    _inject(agency, "files.inject_ransom_note", resource, now)
    _inject(agency, "ledger.corrupt_header", resource, now, clients="all")
    return (RansomwareRequest(share="bookkeeping", observed_at=now, source="scenario", requested_by="scenario-B"),
            {"files_renamed": renamed.changes.get("files_renamed"), "people": total, "clients": count})


# -- C. accidental ledger deletion ----------------------------------------------------------------

def _plant_c(agency, now: datetime):
    client = _plain_client(agency)
    _inject(agency, "ledger.delete_file", f"ledger:{client}", now)
    return (LedgerLossRequest(client_id=client, source="scenario", requested_by="scenario-C"), {"client": client})


# -- D. stale backup ------------------------------------------------------------------------------

def _plant_d(agency, now: datetime):
    _inject(agency, "backup.stale", "backups:nightly", now, hours_old=75)
    return (BackupFailureRequest(backup_target="nightly", source="scenario", requested_by="scenario-D"),
            {"backup_age_hours": 75})


# -- E. annual report backlog ----------------------------------------------------------------------

def _plant_e(agency, now: datetime):
    report = _inject(agency, "annual.inject_unfiled", f"annual:{now.year}", now, count=14,
                     item="business_annual_report")
    return (AnnualDeadlineRequest(year=now.year, observed_at=now, source="scenario", requested_by="scenario-E"),
            {"unfiled": report.changes})


# -- F. urgent expense claim with bad documents -----------------------------------------------------

def _plant_f(agency, now: datetime):
    client = _plain_client(agency)
    request_id = f"R{now:%Y%m%d}-{client}"
    _inject(agency, "claims.inject_urgent_request", f"claim:{request_id}", now, client=client, claims=48,
            unsupported=6)
    return (UrgentClaimRequest(request_id=request_id, observed_at=now, source="scenario", requested_by="scenario-F"),
            {"client": client, "claims": 48, "unsupported": 6})


SCENARIOS: dict[str, Scenario] = {s.id: s for s in (
    Scenario("A", "电子税务局申报截止日中断 / e-tax outage on deadline day", "etax_outage", 210, 1,
             datetime(2026, 10, 26, 16, 40, tzinfo=SHANGHAI), _plant_a),
    Scenario("B", "记账服务器勒索软件 / ransomware on the bookkeeping server", "ransomware", 85, 1, None, _plant_b),
    Scenario("C", "账套误删 / accidental ledger deletion", "ledger_loss", 30, 4, None, _plant_c),
    Scenario("D", "备份过期 / stale backup", "backup_failure", 30, 3, None, _plant_d),
    Scenario("E", "工商年报积压 / annual report backlog", "annual_deadline", 180, 2,
             datetime(2026, 6, 25, 10, 0, tzinfo=SHANGHAI), _plant_e),
    Scenario("F", "客户紧急报账，凭证不全 / urgent expense claim with bad documents", "urgent_claim", 30, 4,
             datetime(2026, 6, 29, 17, 0, tzinfo=SHANGHAI), _plant_f),
)}


def plant_scenario(scenario_id: str, target: Path, *, seed: int = 7, clients: int | None = None) -> PlantedScenario:
    """Generate a sample agency in ``target`` (which must not hold one) as of the scenario's moment,
    plant the scenario, and return the request that should find it."""
    from ledgerguard.sample import generate_agency

    try:
        scenario = SCENARIOS[scenario_id.upper()]
    except KeyError:
        raise KeyError(f"unknown scenario {scenario_id!r}; one of {', '.join(SCENARIOS)}") from None
    as_of = scenario.moment()
    # The agency's history (ledgers, nightly backups, logs) ends shortly before the scenario.
    agency = generate_agency(Path(target), clients=clients or scenario.clients, nights=3, seed=seed,
                             now=(as_of - timedelta(minutes=30)).astimezone(timezone.utc))
    request, planted = scenario.plant(agency, as_of)
    return PlantedScenario(scenario=scenario.id, emergency_type=scenario.emergency_type, request=request,
                           as_of=as_of, expected_level=scenario.expected_level, planted=planted)
