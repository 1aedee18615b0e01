"""One place that turns settings into the live parts a stage needs: catalog, register, agency.

Tasks run in worker threads or subprocesses and receive only small, serialisable parameters;
each of them asks for the runtime here instead of passing engines and catalogs around.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from ledgerguard.config import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from ledgerguard.agency.service import LoadedAgency
    from ledgerguard.catalog.service import Catalog
    from ledgerguard.channels.contacts import Contacts
    from ledgerguard.oncall.models import Roster


@dataclass
class Runtime:
    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _catalog: "Catalog | None" = None
    _engine: "Engine | None" = None
    _agency: "LoadedAgency | None" = None
    _contacts: "Contacts | None" = None
    _roster: "Roster | None | bool" = False  # False: not read yet; None: the agency keeps no roster

    @property
    def catalog(self) -> "Catalog":
        with self._lock:
            if self._catalog is None:
                from ledgerguard.catalog.service import load_catalog

                self._catalog = load_catalog(self.settings.catalog_dir)
            return self._catalog

    @property
    def engine(self) -> "Engine":
        with self._lock:
            if self._engine is None:
                from ledgerguard.register.db import make_engine, upgrade

                self._engine = make_engine(self.settings.register)
                upgrade(self._engine)
            return self._engine

    @property
    def agency(self) -> "LoadedAgency":
        with self._lock:
            if self._agency is None:
                from ledgerguard.agency.service import load_agency

                self._agency = load_agency(self.settings.agency_path)
            return self._agency

    @property
    def contacts(self) -> "Contacts":
        with self._lock:
            if self._contacts is None:
                from ledgerguard.channels.contacts import load_contacts

                self._contacts = load_contacts(self.settings.contacts_path)
            return self._contacts

    @property
    def roster(self) -> "Roster | None":
        """The on-call roster (rotations, overrides, quiet hours), or None without a roster file."""
        agency = self.agency  # takes the lock itself
        with self._lock:
            if self._roster is False:
                from ledgerguard.oncall.service import DEFAULT_ROSTER_FILE, load_roster

                present = agency.data_file("roster", DEFAULT_ROSTER_FILE).is_file()
                self._roster = load_roster(agency=agency) if present else None
            return self._roster

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator["Session"]:
        from ledgerguard.register.db import session_scope

        with session_scope(self.engine, read_only=read_only) as db_session:
            yield db_session


_runtimes: dict[int, Runtime] = {}
_runtimes_lock = threading.Lock()
_sandbox: ContextVar[Settings | None] = ContextVar("ledgerguard_sandbox", default=None)


@contextmanager
def sandboxed(settings: Settings) -> Iterator[Runtime]:
    """Within this block (this thread and the flow and task runs it starts in-process) every
    stage that asks for the runtime gets the sandbox's: a drill's flow reads and repairs the
    sandbox copy of the agency, never the production folder, while the register is shared."""
    token = _sandbox.set(settings)
    try:
        yield get_runtime(settings)
    finally:
        _sandbox.reset(token)
        with _runtimes_lock:
            runtime = _runtimes.pop(id(settings), None)
        if runtime is not None and runtime._engine is not None:
            runtime._engine.dispose()


def get_runtime(settings: Settings | None = None) -> Runtime:
    """The runtime for these settings (a drill's sandbox inside :func:`sandboxed`, else the
    process-wide ones), built once."""
    settings = settings or _sandbox.get() or get_settings()
    with _runtimes_lock:
        runtime = _runtimes.get(id(settings))
        if runtime is None or runtime.settings is not settings:
            runtime = Runtime(settings=settings)
            _runtimes[id(settings)] = runtime
        return runtime


def reset_runtime() -> None:
    """Drop cached runtimes (after settings change, e.g. in tests or the CLI)."""
    with _runtimes_lock:
        for runtime in _runtimes.values():
            if runtime._engine is not None:
                runtime._engine.dispose()
        _runtimes.clear()
