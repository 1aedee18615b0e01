"""备份失败/过期 — backups stopped, went stale, or no longer restore."""

from __future__ import annotations

from prefect import flow

from flows.respond import run_respond
from ledgerguard.response.models import BackupFailureRequest, ResponseOutcome


@flow(name="backup-failure", flow_run_name="backup-failure-{request.backup_target}", validate_parameters=True, persist_result=True)
def backup_failure(request: BackupFailureRequest) -> ResponseOutcome:
    """Check the newest good backup against the RPO; re-run, verify and test-restore it."""
    return run_respond(request.to_request())
