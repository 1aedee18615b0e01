"""The register: incidents, signals, findings, the hash-chained timeline, notifications, runbook
actions, obligations and linked flow runs — SQLAlchemy 2 + Alembic, SQLite or PostgreSQL.

    from ledgerguard.register import service, session_scope

    with session_scope() as db_session:
        incident, opened = service.open_or_join_incident(db_session=db_session, signal=signal, title="…")
"""

from ledgerguard.register.audit import ChainProblem, verify_chain
from ledgerguard.register.db import (
    current_revision,
    dispose_engines,
    downgrade,
    get_engine,
    make_engine,
    session_factory,
    session_scope,
    upgrade,
)
from ledgerguard.register.models import (
    AppendOnlyError,
    Base,
    FindingRecord,
    Incident,
    IncidentFlowRun,
    Notification,
    ObligationRecord,
    ObligationState,
    RunbookAction,
    SignalRecord,
    TimelineEntry,
)
from ledgerguard.register.service import Conflict, NotFound

from ledgerguard.register import service  # noqa: E402  (re-exported module)

__all__ = [
    "AppendOnlyError",
    "Base",
    "ChainProblem",
    "Conflict",
    "FindingRecord",
    "Incident",
    "IncidentFlowRun",
    "NotFound",
    "Notification",
    "ObligationRecord",
    "ObligationState",
    "RunbookAction",
    "SignalRecord",
    "TimelineEntry",
    "current_revision",
    "dispose_engines",
    "downgrade",
    "get_engine",
    "make_engine",
    "service",
    "session_factory",
    "session_scope",
    "upgrade",
    "verify_chain",
]
