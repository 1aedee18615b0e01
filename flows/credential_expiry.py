"""证书/UKey/授权失效 — Certificate, UKey or authorization expiry."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import CredentialExpiryRequest, ResponseOutcome


@flow(name="credential-expiry", flow_run_name="credential-expiry-{request.client_id}", validate_parameters=True, persist_result=True)
def credential_expiry(request: CredentialExpiryRequest) -> ResponseOutcome:
    """Certificates and UKeys expiring before the next deadline."""
    return run_respond(request.to_request())
