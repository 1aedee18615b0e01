"""The sample agency's data sets beyond clients, ledgers and backups: one module per data source
(probe targets, auth/DLP logs, certificate inventory, file-share events, invoices…).

Each module defines ``NAME`` and ``generate(ctx: SampleContext) -> dict`` (what it wrote, for the
log) and writes a *healthy* data set: every detector finds nothing on a freshly generated agency.
The drill injectors break the same files. Modules are found by import, in name order; each gets
its own random stream (seed + module name), so adding a data set does not change the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo


@dataclass
class SampleContext:
    root: Path                      # the agency folder
    agency: Any                     # ledgerguard.agency.LoadedAgency (clients, contacts loaded)
    now: datetime                   # aware; "now" of the sample
    seed: int
    people: list[dict[str, Any]] = field(default_factory=list)  # contacts.yaml people

    @property
    def tz(self) -> ZoneInfo:
        return self.agency.tz

    @property
    def local_now(self) -> datetime:
        return self.now.astimezone(self.tz)

    def rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}:{name}")


def generate_datasets(ctx: SampleContext) -> dict[str, Any]:
    """Run every data-set module; returns {module NAME: what it wrote}."""
    import ledgerguard.sample.datasets as package
    from ledgerguard.plugins import import_package_modules

    written: dict[str, Any] = {}
    for module in import_package_modules(package):
        written[getattr(module, "NAME", module.__name__.rsplit(".", 1)[-1])] = module.generate(ctx)
    return written
