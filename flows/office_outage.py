"""办公设施故障 — Office power, network or disaster."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import OfficeOutageRequest, ResponseOutcome


@flow(name="office-outage", flow_run_name="office-outage-{request.site}", validate_parameters=True, persist_result=True)
def office_outage(request: OfficeOutageRequest) -> ResponseOutcome:
    """UPS and ISP alarms, staff offline."""
    return run_respond(request.to_request())
