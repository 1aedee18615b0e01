"""Routing: a YAML route list maps an alert's labels to an emergency type and a resource.

Like Alertmanager's route tree (flat): routes are tried in order, the first that matches wins;
a route with ``continue: true`` lets the alert go on to the next matching routes too (one signal
per matching route). The default file is ``catalog/intake/routes.yaml``;
``LEDGERGUARD_INTAKE_ROUTES`` names another. Format::

    defaults:                        # every route inherits these
      group_window_seconds: 300      # signals of one group within this window share a dedup key
      group_wait_seconds: 0          # delay the first event of a new group (collects its siblings)
      flap_threshold: 10             # more firings than this per dedup key in the window…
      flap_window_seconds: 600       # …are recorded but suppressed (no event, nobody paged)
    routes:
      - name: ledger-loss            # unique; part of the group key
        sources: [alertmanager, grafana]     # optional: only alerts from these senders
        match: {alertname: LedgerRowCountDrop}          # label equality (missing label = "")
        match_re: {severity: "critical|warning"}        # anchored regular expressions
        emergency_type: ledger_loss  # catalog id
        resource: "ledger:{{ labels.client_id }}"       # Jinja2 (sandboxed, undefined = error)
        summary: "{{ annotations.summary }}"             # optional; default: summary/description/alertname
        group_by: [alertname]        # labels that form the group key; [] = no grouping
        continue: false
        # any of the defaults may be overridden per route

Templates see ``labels``, ``annotations`` and ``source``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ledgerguard.config import PROJECT_ROOT
from ledgerguard.intake.models import SOURCES, RawSignal

DEFAULT_ROUTES_FILE = PROJECT_ROOT / "catalog" / "intake" / "routes.yaml"

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class RouteSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_window_seconds: float = Field(300, ge=0)
    group_wait_seconds: float = Field(0, ge=0)
    flap_threshold: int = Field(10, ge=0, description="0 = never suppress")
    flap_window_seconds: float = Field(600, ge=0)


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    sources: list[str] | None = None
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    emergency_type: str = Field(pattern=r"^[a-z][a-z0-9_]{0,99}$")
    resource: str = Field(min_length=1)
    summary: str | None = None
    group_by: list[str] = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")
    group_window_seconds: float | None = Field(None, ge=0)
    group_wait_seconds: float | None = Field(None, ge=0)
    flap_threshold: int | None = Field(None, ge=0)
    flap_window_seconds: float | None = Field(None, ge=0)

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: list[str] | None) -> list[str] | None:
        for s in value or []:
            if s not in SOURCES:
                raise ValueError(f"unknown source {s!r}; one of {', '.join(SOURCES)}")
        return value

    @field_validator("match_re")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{label}: invalid regular expression {pattern!r}: {exc}") from None
        return value

    @field_validator("resource", "summary")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                _env.parse(value)
            except TemplateError as exc:
                raise ValueError(f"invalid template {value!r}: {exc}") from None
        return value

    def matches(self, raw: RawSignal) -> bool:
        if self.sources and raw.source not in self.sources:
            return False
        labels = raw.labels
        if any(labels.get(k, "") != v for k, v in self.match.items()):
            return False
        return all(re.fullmatch(p, labels.get(k, "")) for k, p in self.match_re.items())

    def settings(self, defaults: RouteSettings) -> RouteSettings:
        own = {k: getattr(self, k) for k in RouteSettings.model_fields if getattr(self, k) is not None}
        return defaults.model_copy(update=own)


class RoutesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: RouteSettings = Field(default_factory=RouteSettings)
    routes: list[Route] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> "RoutesFile":
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"route names used twice: {', '.join(dupes)}")
        return self


class RoutingError(ValueError):
    """The routing file cannot be read or is invalid."""


@dataclass
class Routed:
    """Where one alert goes: the emergency type and resource, its group and the route's settings."""

    route: str | None
    emergency_type: str
    resource: str
    summary: str
    group_key: str | None
    settings: RouteSettings


@dataclass
class Unrouted:
    reason: str


def _render(template: str, raw: RawSignal) -> str:
    return _env.from_string(template).render(labels=raw.labels, annotations=raw.annotations,
                                             source=raw.source).strip()


def default_summary(raw: RawSignal) -> str:
    a, labels = raw.annotations, raw.labels
    return (raw.summary or a.get("summary") or a.get("description") or a.get("message")
            or labels.get("alertname") or "")[:2000]


class Router:
    def __init__(self, config: RoutesFile, *, path: Path | None = None) -> None:
        self.config = config
        self.path = path

    @property
    def routes(self) -> list[Route]:
        return self.config.routes

    @property
    def defaults(self) -> RouteSettings:
        return self.config.defaults

    def _build(self, route: Route | None, raw: RawSignal, emergency_type: str,
               resource_template: str | None) -> Routed | Unrouted:
        settings = route.settings(self.defaults) if route else self.defaults
        try:
            resource = raw.resource or _render(resource_template or "", raw)
            summary = _render(route.summary, raw) if route and route.summary else default_summary(raw)
        except TemplateError as exc:
            return Unrouted(f"route {route.name if route else '?'}: cannot render the template: {exc}")
        if not resource or len(resource) > 255 or any(c.isspace() for c in resource):
            return Unrouted(f"route {route.name if route else '?'}: rendered resource {resource!r} is empty, "
                            "too long or has spaces")
        group_key = None
        if route is not None and route.group_by:
            values = ",".join(f"{label}={raw.labels.get(label, '')}" for label in route.group_by)
            group_key = f"{route.name}:{emergency_type}:{values}"[:255]
        return Routed(route=route.name if route else None, emergency_type=emergency_type, resource=resource,
                      summary=summary[:2000], group_key=group_key, settings=settings)

    def route(self, raw: RawSignal) -> list[Routed | Unrouted]:
        """Every destination of ``raw``: the first matching route, and the ones after it while
        ``continue`` is true. A signal with an explicit type (generic) takes the first route of
        that type whose matchers hold (for its settings and resource template), else the
        defaults. Nothing matched → one :class:`Unrouted` with the reason."""
        if raw.emergency_type:
            for route in self.routes:
                if route.emergency_type == raw.emergency_type and route.matches(raw):
                    return [self._build(route, raw, raw.emergency_type, route.resource)]
            if raw.resource:
                return [self._build(None, raw, raw.emergency_type, None)]
            return [Unrouted(f"no route of type {raw.emergency_type} matches and no resource was given")]
        out: list[Routed | Unrouted] = []
        for route in self.routes:
            if route.matches(raw):
                out.append(self._build(route, raw, route.emergency_type, route.resource))
                if not route.continue_:
                    break
        if not out:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(raw.labels.items()))[:300]
            out.append(Unrouted(f"no route matches the labels {{{shown}}}"))
        return out


def load_routes(path: Path | None = None) -> Router:
    """Read and check a routing file (default ``catalog/intake/routes.yaml``)."""
    path = Path(path or DEFAULT_ROUTES_FILE)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise RoutingError(f"{path}: cannot read the routing file: {exc}") from None
    except yaml.YAMLError as exc:
        raise RoutingError(f"{path}: not valid YAML: {exc}") from None
    try:
        return Router(RoutesFile.model_validate(raw), path=path)
    except ValidationError as exc:
        raise RoutingError(f"{path}: " + "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in exc.errors())) from None


def check_routes(router: Router, known_types: set[str]) -> list[str]:
    """Problems of a loaded routing file against the catalog's emergency types."""
    return [f"routes.{i}.emergency_type: unknown emergency type {r.emergency_type!r}"
            for i, r in enumerate(router.routes) if r.emergency_type not in known_types]
