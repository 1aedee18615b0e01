"""Typed run parameters and results of the response pipeline.

Prefect turns these pydantic models into the JSON schema the UI renders as a form and the
server enforces, so titles and descriptions here are what a duty lead reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from ledgerguard.models import Signal, utcnow


class RunOptions(BaseModel):
    """How a run behaves, whatever started it."""

    remediate: bool = Field(True, title="Remediate", description="Run the runbook's automatic steps")
    drill: bool = Field(False, title="Drill", description="Mark every message 【演练】 and keep it out of real metrics")
    requested_by: str = Field("manual", title="Requested by", description="Person or system that started the run")
    source: str = Field("manual", title="Source", description="manual, alertmanager, sweep, drill…")
    dedup_key: str | None = Field(None, title="Dedup key", description="Join the open incident with this key; default <type>:<resource>")
    summary: str = Field("", title="What was observed", max_length=2000)
    observed_at: datetime | None = Field(
        None, title="As of", description="Judge the data as of this time (default: now). For replaying a past "
                                         "event or running a drill scenario; deadlines and windows count from it")


class ResponseRequest(RunOptions):
    """The shared `respond` pipeline's input: one emergency type on one resource."""

    emergency_type: str = Field(title="Emergency type", description="Catalog id, e.g. ledger_loss")
    resource: str = Field(title="Resource", description="What is affected, e.g. ledger:C0001")
    labels: dict[str, str] = Field(default_factory=dict, title="Labels")
    detector_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, title="Detector parameters",
        description="Per-detector overrides of the catalog's params, e.g. {\"backup.age\": {\"rpo_hours\": 12}}")

    def to_signal(self) -> Signal:
        return Signal(
            source=self.source, emergency_type=self.emergency_type, resource=self.resource,
            labels=self.labels, observed_at=self.observed_at or utcnow(),
            dedup_key=self.dedup_key or "", drill=self.drill, summary=self.summary,
            payload={"requested_by": self.requested_by},
        )


class LedgerLossRequest(RunOptions):
    """账套误删/损坏: check one client's ledger against its last good backup."""

    client_id: str = Field(title="Client ID", description="Client whose ledger to check, e.g. C0001",
                           pattern=r"^[A-Za-z0-9_-]{1,32}$")

    def to_request(self) -> ResponseRequest:
        return ResponseRequest(emergency_type="ledger_loss", resource=f"ledger:{self.client_id}",
                               labels={"client_id": self.client_id},
                               **self.model_dump(exclude={"client_id"}))


class BackupFailureRequest(RunOptions):
    """备份失败/过期: check the agency's backup sets against the RPO."""

    backup_target: str = Field("nightly", title="Backup target", description="Which backup job to check",
                               pattern=r"^[A-Za-z0-9_-]{1,64}$")
    rpo_hours: float | None = Field(None, title="RPO (hours)", gt=0, le=24 * 31,
                                    description="Override the catalog's RPO for this run")

    def to_request(self) -> ResponseRequest:
        overrides = {"backup.age": {"rpo_hours": self.rpo_hours}} if self.rpo_hours else {}
        return ResponseRequest(emergency_type="backup_failure", resource=f"backups:{self.backup_target}",
                               labels={"backup_target": self.backup_target}, detector_params=overrides,
                               **self.model_dump(exclude={"backup_target", "rpo_hours"}))


ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
CLIENT_OR_ALL = r"^(all|[A-Za-z0-9_-]{1,32})$"
PERIOD_OR_CURRENT = r"^(current|\d{4}-(0[1-9]|1[0-2]))$"


class _TypedRequest(RunOptions):
    """A type's own form: its fields name the resource; ``to_request`` makes the shared request."""

    emergency_type: ClassVar[str]
    resource_prefix: ClassVar[str]
    resource_field: ClassVar[str]

    def resource(self) -> str:
        return f"{self.resource_prefix}:{getattr(self, self.resource_field)}"

    def detector_params(self) -> dict[str, dict[str, Any]]:
        return {}

    def to_request(self) -> ResponseRequest:
        own = set(type(self).model_fields) - set(RunOptions.model_fields)
        labels = {name: str(value) for name, value in self.model_dump(include=own).items() if value is not None}
        return ResponseRequest(emergency_type=self.emergency_type, resource=self.resource(), labels=labels,
                               detector_params=self.detector_params(), **self.model_dump(exclude=own))


class EtaxOutageRequest(_TypedRequest):
    """电子税务局不可用: probe the e-tax portal and weigh the outage against the filing deadline."""

    emergency_type: ClassVar[str] = "etax_outage"
    resource_prefix: ClassVar[str] = "etax"
    resource_field: ClassVar[str] = "portal"
    portal: str = Field("default", title="Portal", description="Probe target of the provincial e-tax bureau, "
                        "as named in the agency's probes/targets.yaml", pattern=ID_PATTERN)


class SaasOutageRequest(_TypedRequest):
    """云记账SaaS中断: status page, API errors and sync lag of the bookkeeping SaaS."""

    emergency_type: ClassVar[str] = "saas_outage"
    resource_prefix: ClassVar[str] = "saas"
    resource_field: ClassVar[str] = "service"
    service: str = Field("bookkeeping", title="Service", description="SaaS service as named in the probe targets",
                         pattern=ID_PATTERN)


class OfficeOutageRequest(_TypedRequest):
    """办公设施故障: UPS and ISP alarms, staff offline."""

    emergency_type: ClassVar[str] = "office_outage"
    resource_prefix: ClassVar[str] = "office"
    resource_field: ClassVar[str] = "site"
    site: str = Field("main", title="Site", description="Office site", pattern=ID_PATTERN)


class VendorBreachRequest(_TypedRequest):
    """供应商泄露: a vendor's breach notice or a threat-intel entry about a vendor."""

    emergency_type: ClassVar[str] = "vendor_breach"
    resource_prefix: ClassVar[str] = "vendor"
    resource_field: ClassVar[str] = "vendor_id"
    vendor_id: str = Field(title="Vendor", description="Vendor id from the agency's vendor register",
                           pattern=ID_PATTERN)


class RansomwareRequest(_TypedRequest):
    """勒索/恶意程序: mass renames, ransom notes, unreadable ledgers on a file share."""

    emergency_type: ClassVar[str] = "ransomware"
    resource_prefix: ClassVar[str] = "fileserver"
    resource_field: ClassVar[str] = "share"
    share: str = Field("bookkeeping", title="File share", description="Share or server to check",
                       pattern=ID_PATTERN)


class CredentialExpiryRequest(_TypedRequest):
    """证书/UKey/授权失效: certificates and UKeys expiring before the next deadline."""

    emergency_type: ClassVar[str] = "credential_expiry"
    resource_prefix: ClassVar[str] = "credential"
    resource_field: ClassVar[str] = "client_id"
    client_id: str = Field("all", title="Client ID", description="One client, or all", pattern=CLIENT_OR_ALL)


class AccountTakeoverRequest(_TypedRequest):
    """钓鱼/账号被盗: new-device or new-region logins, MFA failures, phishing clicks."""

    emergency_type: ClassVar[str] = "account_takeover"
    resource_prefix: ClassVar[str] = "account"
    resource_field: ClassVar[str] = "user"
    user: str = Field("all", title="Account", description="Staff account to check, or all", pattern=r"^[A-Za-z0-9_.@-]{1,64}$")


class InsiderExfiltrationRequest(_TypedRequest):
    """内部外泄/离职带走: bulk exports, USB/cloud uploads, access after resignation."""

    emergency_type: ClassVar[str] = "insider_exfiltration"
    resource_prefix: ClassVar[str] = "user"
    resource_field: ClassVar[str] = "staff_id"
    staff_id: str = Field("all", title="Staff ID", description="Staff member to check, or all", pattern=r"^[A-Za-z0-9_.@-]{1,64}$")


class FilingBacklogRequest(_TypedRequest):
    """申报积压: unfiled returns against the statutory deadline."""

    emergency_type: ClassVar[str] = "filing_backlog"
    resource_prefix: ClassVar[str] = "filings"
    resource_field: ClassVar[str] = "period"
    period: str = Field("current", title="Period", description="Tax period YYYY-MM, or current", pattern=PERIOD_OR_CURRENT)


class AnnualDeadlineRequest(_TypedRequest):
    """年度事项逾期风险: 工商年报, 汇算清缴 and 备案 not yet submitted."""

    emergency_type: ClassVar[str] = "annual_deadline"
    resource_prefix: ClassVar[str] = "annual"
    resource_field: ClassVar[str] = "year"
    year: int = Field(title="Year", description="The reporting year's due dates to check, e.g. 2026", ge=2000, le=2100)


class WrongFilingRequest(_TypedRequest):
    """申报错误: invoices issued vs sales declared, tax-bureau risk prompts."""

    emergency_type: ClassVar[str] = "wrong_filing"
    resource_prefix: ClassVar[str] = "returns"
    resource_field: ClassVar[str] = "period"
    period: str = Field(title="Period", description="Tax period YYYY-MM", pattern=r"^\d{4}-(0[1-9]|1[0-2])$")


class PaymentFailureRequest(_TypedRequest):
    """扣款失败/资金异常: failed tax debits, unverified bank-account changes."""

    emergency_type: ClassVar[str] = "payment_failure"
    resource_prefix: ClassVar[str] = "payments"
    resource_field: ClassVar[str] = "client_id"
    client_id: str = Field("all", title="Client ID", description="One client, or all", pattern=CLIENT_OR_ALL)


class UrgentClaimRequest(_TypedRequest):
    """客户紧急报账: an urgent expense-claim request, reviewed against its documents."""

    emergency_type: ClassVar[str] = "urgent_claim"
    resource_prefix: ClassVar[str] = "claim"
    resource_field: ClassVar[str] = "request_id"
    request_id: str = Field(title="Claim request", description="Id of the claim request (claims/requests/<id>.json)",
                            pattern=ID_PATTERN)


TYPED_REQUESTS: dict[str, type[_TypedRequest]] = {
    cls.emergency_type: cls for cls in (
        EtaxOutageRequest, SaasOutageRequest, OfficeOutageRequest, VendorBreachRequest, RansomwareRequest,
        CredentialExpiryRequest, AccountTakeoverRequest, InsiderExfiltrationRequest, FilingBacklogRequest,
        AnnualDeadlineRequest, WrongFilingRequest, PaymentFailureRequest, UrgentClaimRequest)}
"""The request model of every type built on `_TypedRequest` (ledger_loss and backup_failure have their own)."""


class StepResult(BaseModel):
    step_id: str
    kind: str
    status: str
    summary: str


class ResponseOutcome(BaseModel):
    """What one run did, returned by every emergency flow and printed by the demo."""

    emergency_type: str
    resource: str
    incident_id: str | None = None
    incident_created: bool = False
    status: str = "no_incident"
    level: int | None = None
    level_label: str | None = None
    priority: str | None = None
    regulatory_grade: str | None = None
    rationale: list[str] = Field(default_factory=list)
    clear_reasons: list[str] = Field(default_factory=list)
    notified: list[str] = Field(default_factory=list)
    notifications_failed: list[str] = Field(default_factory=list)
    steps: list[StepResult] = Field(default_factory=list)
    obligations: list[str] = Field(default_factory=list)
    report_path: str | None = None
    postmortem_path: str | None = None
    flow_run_id: str | None = None


class Classified(BaseModel):
    """The classify stage's result: the incident it opened or joined and its assessment."""

    incident_id: str
    created: bool
    assessment: dict[str, Any]
    affected_clients: list[str] = Field(default_factory=list)

    @property
    def level(self) -> int:
        return int(self.assessment["level"])
