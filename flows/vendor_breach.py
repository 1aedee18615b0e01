"""供应商泄露 — Vendor breach."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import ResponseOutcome, VendorBreachRequest


@flow(name="vendor-breach", flow_run_name="vendor-breach-{request.vendor_id}", validate_parameters=True, persist_result=True)
def vendor_breach(request: VendorBreachRequest) -> ResponseOutcome:
    """A vendor's breach notice or a threat-intel entry about a vendor."""
    return run_respond(request.to_request())
