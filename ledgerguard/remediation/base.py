"""Remediation actions: plain functions ``action(ctx) -> ActionResult`` registered by id.

An action either returns ``ActionResult(ok=False, summary=<reason>)`` or raises
:class:`ActionFailed`; it is idempotent where it can be (running it twice is safe). With
``ctx.dry_run`` it changes nothing and says what it would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ActionFn = Callable[["ActionContext"], "ActionResult"]


class ActionFailed(RuntimeError):
    """An action could not do its job; ``reason`` says why, ``output`` keeps what it saw."""

    def __init__(self, reason: str, output: dict[str, Any] | None = None):
        self.reason = reason
        self.output = output or {}
        super().__init__(reason)


@dataclass
class ActionContext:
    agency: Any  # ledgerguard.agency.LoadedAgency
    resource: str
    params: dict[str, Any] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    scratch_dir: Path = field(default_factory=lambda: Path.cwd() / ".ledgerguard" / "scratch")
    incident_id: str = "adhoc"
    dry_run: bool = False

    def __post_init__(self) -> None:
        self.params = dict(self.params or {})
        self.scratch_dir = Path(self.scratch_dir)
        if self.now.tzinfo is None:
            self.now = self.now.replace(tzinfo=timezone.utc)

    @property
    def incident_dir(self) -> Path:
        """``scratch_dir/<incident_id>``: where this incident's staging copies and test restores go."""
        return self.scratch_dir / self.incident_id


@dataclass
class ActionResult:
    ok: bool
    summary: str
    output: dict[str, Any] = field(default_factory=dict)


_ACTIONS: dict[str, ActionFn] = {}


def register_action(action_id: str) -> Callable[[ActionFn], ActionFn]:
    """Decorator: ``@register_action("backup.rerun")``."""

    def deco(fn: ActionFn) -> ActionFn:
        fn.action_id = action_id  # type: ignore[attr-defined]
        _ACTIONS[action_id] = fn
        return fn

    return deco


def _load_builtin() -> None:
    # Every module of this package registers its actions on import (one module per data source).
    import ledgerguard.remediation as package
    from ledgerguard.plugins import import_package_modules

    import_package_modules(package, skip={"base"})


def get_action(action_id: str) -> ActionFn:
    _load_builtin()
    try:
        return _ACTIONS[action_id]
    except KeyError:
        raise KeyError(f"unknown remediation action {action_id!r}; known actions: "
                       f"{', '.join(sorted(_ACTIONS))}") from None


def known_actions() -> list[str]:
    _load_builtin()
    return sorted(_ACTIONS)


def tail(text: str | bytes | None, lines: int = 20, chars: int = 4000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])[-chars:]
