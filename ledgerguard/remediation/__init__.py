"""Remediation actions for the runbooks: ``get_action(id)(ctx) -> ActionResult``."""

from ledgerguard.remediation.base import (
    ActionContext,
    ActionFailed,
    ActionResult,
    get_action,
    known_actions,
    register_action,
)
from ledgerguard.remediation import backup, ledger  # noqa: E402,F401 — registers the built-ins

__all__ = ["ActionContext", "ActionFailed", "ActionResult", "get_action", "known_actions",
           "register_action"]
