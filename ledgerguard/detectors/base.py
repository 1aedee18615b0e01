"""Detectors read real data and confirm (or not) an emergency; injectors break the same data
for drills and tests. One module per data source; both kinds register themselves by id."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ledgerguard.models import EvidenceItem, Finding

# Facts every finding sets where it can; the severity rules read them.
COMMON_FACTS = ("clients_affected", "affected_clients", "vip", "pii_lost", "pii_leaked",
                "pii_tampered", "statutory_consequence", "control_failure")


@dataclass
class DetectionContext:
    agency: Any  # ledgerguard.agency.LoadedAgency
    resource: str
    params: dict[str, Any] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    scratch_dir: Path = field(default_factory=lambda: Path.cwd() / ".ledgerguard" / "scratch")

    def __post_init__(self) -> None:
        self.params = dict(self.params or {})
        self.scratch_dir = Path(self.scratch_dir)
        if self.now.tzinfo is None:
            self.now = self.now.replace(tzinfo=timezone.utc)


@dataclass
class DetectorResult:
    """A finding, or None with the reason the detector found nothing."""

    finding: Finding | None
    clear_reason: str = ""

    @property
    def found(self) -> bool:
        return self.finding is not None

    @classmethod
    def clear(cls, reason: str) -> "DetectorResult":
        return cls(finding=None, clear_reason=reason)


class Detector:
    """Base class: set ``id`` and ``emergency_type``, implement :meth:`detect`."""

    id: str = ""
    emergency_type: str = ""
    description: str = ""

    def detect(self, ctx: DetectionContext) -> DetectorResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def finding(self, ctx: DetectionContext, summary: str, facts: dict[str, Any],
                evidence: list[EvidenceItem]) -> DetectorResult:
        return DetectorResult(finding=Finding(detector=self.id, resource=ctx.resource, summary=summary,
                                              facts=facts, evidence=evidence, observed_at=ctx.now),
                              clear_reason="")


@dataclass
class InjectionContext:
    agency: Any  # ledgerguard.agency.LoadedAgency
    resource: str
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    scratch_dir: Path | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            self.now = self.now.replace(tzinfo=timezone.utc)


@dataclass
class InjectionReport:
    """What an injector broke, with enough detail to undo it where it can."""

    injector: str
    resource: str
    summary: str
    changes: dict[str, Any] = field(default_factory=dict)
    undo: dict[str, Any] | None = None
    detector: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"injector": self.injector, "resource": self.resource, "summary": self.summary,
                "changes": self.changes, "undo": self.undo, "detector": self.detector}


class Injector:
    """Base class: set ``id`` (and ``detector``, the id that should fire), implement :meth:`inject`."""

    id: str = ""
    emergency_type: str = ""
    detector: str = ""
    description: str = ""

    def inject(self, ctx: InjectionContext, **kwargs: Any) -> InjectionReport:  # pragma: no cover
        raise NotImplementedError

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        """Undo an injection when that is possible; the default says it is not."""
        raise NotImplementedError(f"injector {self.id} cannot be undone; restore from backup")


# -- registries ---------------------------------------------------------------------------------

_DETECTORS: dict[str, Detector] = {}
_INJECTORS: dict[str, Injector] = {}



def register_detector(cls: type[Detector]) -> type[Detector]:
    """Class decorator: register one instance of the detector under its ``id``."""
    if not cls.id:
        raise ValueError(f"{cls.__name__} has no id")
    _DETECTORS[cls.id] = cls()
    return cls


def register_injector(cls: type[Injector]) -> type[Injector]:
    if not cls.id:
        raise ValueError(f"{cls.__name__} has no id")
    _INJECTORS[cls.id] = cls()
    return cls


def _load_builtin() -> None:
    # Every module of this package registers its detectors and injectors on import (one module
    # per data source); importing them here keeps get_* usable from base alone.
    import ledgerguard.detectors as package
    from ledgerguard.plugins import import_package_modules

    import_package_modules(package, skip={"base"})


def get_detector(detector_id: str) -> Detector:
    _load_builtin()
    try:
        return _DETECTORS[detector_id]
    except KeyError:
        raise KeyError(f"unknown detector {detector_id!r}; known detectors: "
                       f"{', '.join(sorted(_DETECTORS))}") from None


def known_detectors() -> list[str]:
    _load_builtin()
    return sorted(_DETECTORS)


def get_injector(injector_id: str) -> Injector:
    _load_builtin()
    try:
        return _INJECTORS[injector_id]
    except KeyError:
        raise KeyError(f"unknown injector {injector_id!r}; known injectors: "
                       f"{', '.join(sorted(_INJECTORS))}") from None


def known_injectors() -> list[str]:
    _load_builtin()
    return sorted(_INJECTORS)


# -- helpers shared by detectors ------------------------------------------------------------------

def client_from_resource(resource: str, prefix: str = "ledger:") -> str:
    """``ledger:C0001`` → ``C0001``; a bare id is accepted too."""
    if resource.startswith(prefix):
        return resource[len(prefix):]
    if ":" in resource:
        raise ValueError(f"resource {resource!r} is not of the form {prefix}<client_id>")
    return resource


def client_facts(agency: Any, client_ids: list[str]) -> dict[str, Any]:
    """The common client facts: count, ids, and whether any is VIP."""
    ids = list(dict.fromkeys(client_ids))
    return {"clients_affected": len(ids), "affected_clients": ids,
            "vip": any(agency.is_vip(c) for c in ids),
            "vip_clients": [c for c in ids if agency.is_vip(c)]}


def base_facts(agency: Any, client_ids: list[str], **flags: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {**client_facts(agency, client_ids), "pii_lost": False,
                             "pii_leaked": False, "pii_tampered": False,
                             "statutory_consequence": False, "control_failure": False}
    facts.update(flags)
    return facts


def exposed_facts(agency: Any, client_ids: list[str], **flags: Any) -> dict[str, Any]:
    """Facts for a control failure: clients are exposed to a risk, none affected (yet).

    Stale or broken backups lose nothing by themselves; counting every client in the set as
    affected would grade a backup problem like a 200-client outage.
    """
    ids = list(dict.fromkeys(client_ids))
    facts = base_facts(agency, [], **flags)
    facts.update({"clients_exposed": len(ids), "exposed_clients": ids})
    return facts


def hours(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
