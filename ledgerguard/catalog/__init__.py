"""The catalog of emergency types (紧急情况清单) and the severity rubric, loaded from YAML."""

from ledgerguard.catalog.models import (
    ROLES,
    CatalogEntry,
    LocalText,
    ObligationSpec,
    Routing,
    Rubric,
    RunbookStep,
    Scenario,
)
from ledgerguard.catalog.service import Catalog, CatalogError, CatalogProblem, check_catalog, load_catalog

__all__ = [
    "ROLES",
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "CatalogProblem",
    "LocalText",
    "ObligationSpec",
    "Routing",
    "Rubric",
    "RunbookStep",
    "Scenario",
    "check_catalog",
    "load_catalog",
]
