"""The intake's settings and the payloads it accepts, as pydantic models.

Field names follow each sender's own format (Alertmanager webhook v4, PagerDuty Events API v2,
Grafana unified alerting, LedgerGuard's generic signal), so a validation error names the field
the sender knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
SOURCES = ("alertmanager", "pagerduty", "grafana", "generic", "claims", "vendor_notice", "ack")
"""What a credential's ``sources`` may name: the senders, plus ``ack`` (acknowledge incidents over
``POST /api/v1/incidents/{id}/ack``; it sends no signal, so no route ever matches it)."""


class IntakeSettings(BaseSettings):
    """``LEDGERGUARD_INTAKE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LEDGERGUARD_INTAKE_", extra="ignore")

    tokens: str | None = Field(None, description="name:token[:source+source],… (adds to the credentials file)")
    credentials_file: Path | None = Field(None, description="default <home>/intake-credentials.yaml")
    routes: Path | None = Field(None, description="routing file; default catalog/intake/routes.yaml")
    max_body_bytes: int = Field(MiB, gt=0)
    signature_tolerance_seconds: int = Field(300, gt=0)
    retry_after_seconds: int = Field(5, ge=1)
    db_timeout_seconds: float = Field(10.0, gt=0, description="wait for SQLite's write lock per attempt")
    db_attempts: int = Field(3, ge=1, description="attempts of the register write before answering 503")
    host: str = "127.0.0.1"
    port: int = 8600


# --- what the parsers hand to routing ---------------------------------------------------------


@dataclass
class RawSignal:
    """One alert from a sender, before routing: its labels, what happened and its identity."""

    source: str
    action: str  # firing | resolve | acknowledge | change
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    observed_at: datetime | None = None
    fingerprint: str | None = None
    dedup_key: str | None = None  # explicit (PagerDuty, generic): never regrouped
    emergency_type: str | None = None  # explicit (generic)
    resource: str | None = None  # explicit (generic)
    drill: bool = False
    details: dict[str, Any] = field(default_factory=dict)


# --- Prometheus Alertmanager webhook (version 4) ---------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class AlertmanagerAlert(_Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class AlertmanagerWebhook(_Lenient):
    version: Literal["4"]
    groupKey: str = ""
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AlertmanagerAlert] = Field(min_length=1)


# --- Grafana unified alerting webhook --------------------------------------------------------


class GrafanaAlert(AlertmanagerAlert):
    silenceURL: str = ""
    dashboardURL: str = ""
    panelURL: str = ""
    values: dict[str, Any] | None = None
    valueString: str = ""


class GrafanaWebhook(_Lenient):
    receiver: str = ""
    status: Literal["firing", "resolved"]
    orgId: int | None = None
    alerts: list[GrafanaAlert] = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    version: str = "1"
    groupKey: str = ""
    truncatedAlerts: int = 0
    title: str = ""
    state: str = ""
    message: str = ""


# --- PagerDuty Events API v2 -----------------------------------------------------------------


class PagerDutyPayload(_Lenient):
    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1, max_length=255)
    severity: Literal["critical", "error", "warning", "info"]
    timestamp: datetime | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(None, alias="class")
    custom_details: dict[str, Any] | str | None = None


class PagerDutyEvent(_Lenient):
    routing_key: str = Field(min_length=1)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(None, max_length=255)
    payload: PagerDutyPayload | None = None
    client: str | None = None
    client_url: str | None = None
    images: list[dict[str, Any]] = Field(default_factory=list)
    links: list[dict[str, Any]] = Field(default_factory=list)


class PagerDutyChangePayload(_Lenient):
    summary: str = Field(min_length=1, max_length=1024)
    timestamp: datetime | None = None
    source: str | None = None
    custom_details: dict[str, Any] | str | None = None


class PagerDutyChange(_Lenient):
    routing_key: str = Field(min_length=1)
    payload: PagerDutyChangePayload
    links: list[dict[str, Any]] = Field(default_factory=list)


# --- LedgerGuard's generic signal ------------------------------------------------------------


class GenericSignal(BaseModel):
    """``POST /api/v1/signals``: one signal in LedgerGuard's own terms."""

    model_config = ConfigDict(extra="forbid")

    emergency_type: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,99}$",
                                       description="catalog id; routed by labels when absent")
    resource: str | None = Field(None, min_length=1, max_length=255)
    summary: str = Field("", max_length=2000)
    labels: dict[str, str] = Field(default_factory=dict)
    dedup_key: str | None = Field(None, min_length=1, max_length=255)
    observed_at: datetime | None = None
    status: Literal["firing", "resolved"] = "firing"
    drill: bool = False

    @field_validator("resource")
    @classmethod
    def _resource_needs_type(cls, value: str | None, info: Any) -> str | None:
        if value is not None and not info.data.get("emergency_type"):
            raise ValueError("resource is given without emergency_type")
        return value


# --- acknowledging an incident ---------------------------------------------------------------


class AckRequest(BaseModel):
    """``POST /api/v1/incidents/{id}/ack``: who takes the incident over (an id in contacts.yaml)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: str = Field(min_length=1, max_length=100, description="the person's id in contacts.yaml")
    note: str = Field("", max_length=2000)
