"""Remediation actions for the runbooks: ``get_action(id)(ctx) -> ActionResult``."""

from ledgerguard.remediation.base import (
    ActionContext,
    ActionFailed,
    ActionResult,
    get_action,
    known_actions,
    register_action,
)

__all__ = ["ActionContext", "ActionFailed", "ActionResult", "get_action", "known_actions",
           "register_action"]
