"""Every deployment LedgerGuard runs, as data: one list for `serve` (embedded) and work pools.

Issue 3 adds event triggers and schedules; the list is the single source either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flows import backup_failure, ledger_loss


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    flow: object
    description: str
    tags: tuple[str, ...] = field(default_factory=tuple)

    def to_deployment(self):
        return self.flow.to_deployment(name=self.name, description=self.description, tags=list(self.tags))


DEPLOYMENTS: list[DeploymentSpec] = [
    DeploymentSpec("ledger-loss", ledger_loss, "账套误删/损坏 — check a client's ledger and restore it",
                   ("emergency:ledger_loss",)),
    DeploymentSpec("backup-failure", backup_failure, "备份失败/过期 — check backups against the RPO and repair them",
                   ("emergency:backup_failure",)),
]


def serve_all() -> None:
    """Serve every deployment from this process (the embedded default)."""
    from prefect import serve

    serve(*(spec.to_deployment() for spec in DEPLOYMENTS))
