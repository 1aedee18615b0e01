"""Prefect flows: one per emergency type, all running the shared `respond` pipeline."""

from flows.account_takeover import account_takeover
from flows.annual_deadline import annual_deadline
from flows.backup_failure import backup_failure
from flows.credential_expiry import credential_expiry
from flows.drill import drill, full_drill, monthly_drill, tabletop
from flows.etax_outage import etax_outage
from flows.filing_backlog import filing_backlog
from flows.insider_exfiltration import insider_exfiltration
from flows.ledger_loss import ledger_loss
from flows.office_outage import office_outage
from flows.payment_failure import payment_failure
from flows.ransomware import ransomware
from flows.readiness import readiness
from flows.respond import respond
from flows.saas_outage import saas_outage
from flows.sweeps import backup_sweep, deadline_sweep, ledger_sweep, probe_sweep, security_sweep
from flows.urgent_claim import urgent_claim
from flows.vendor_breach import vendor_breach
from flows.watchdog import page_duty_lead, resolve_incident
from flows.wrong_filing import wrong_filing

EMERGENCY_FLOWS = {
    "account_takeover": account_takeover,
    "annual_deadline": annual_deadline,
    "backup_failure": backup_failure,
    "credential_expiry": credential_expiry,
    "etax_outage": etax_outage,
    "filing_backlog": filing_backlog,
    "insider_exfiltration": insider_exfiltration,
    "ledger_loss": ledger_loss,
    "office_outage": office_outage,
    "payment_failure": payment_failure,
    "ransomware": ransomware,
    "saas_outage": saas_outage,
    "urgent_claim": urgent_claim,
    "vendor_breach": vendor_breach,
    "wrong_filing": wrong_filing,
}
"""Every emergency type's flow, by catalog id."""

__all__ = ["EMERGENCY_FLOWS", "drill", "full_drill", "monthly_drill", "tabletop", "backup_sweep", "deadline_sweep", "ledger_sweep", "probe_sweep", "security_sweep", "page_duty_lead", "readiness", "resolve_incident", "respond",
           *(flow.fn.__name__ for flow in EMERGENCY_FLOWS.values())]
