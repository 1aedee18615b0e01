"""The intake: monitoring alerts in (Alertmanager, PagerDuty Events v2, Grafana, generic JSON),
register rows and outbox events out. Prefect-free: a relay delivers the outbox to Prefect.

    from ledgerguard.intake import create_app
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(**kwargs: Any) -> Any:
    """See :func:`ledgerguard.intake.app.create_app` (imported lazily: Starlette is only needed here)."""
    from ledgerguard.intake.app import create_app as _create_app

    return _create_app(**kwargs)
