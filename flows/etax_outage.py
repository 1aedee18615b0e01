"""电子税务局不可用 — E-tax bureau outage."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import EtaxOutageRequest, ResponseOutcome


@flow(name="etax-outage", flow_run_name="etax-outage-{request.portal}", validate_parameters=True, persist_result=True)
def etax_outage(request: EtaxOutageRequest) -> ResponseOutcome:
    """Probe the e-tax portal and weigh the outage against the filing deadline."""
    return run_respond(request.to_request())
