"""Engines, sessions and migrations for the register.

Typical use (the URL defaults to ``get_settings().register``; the schema is migrated to head the
first time the process asks for that engine)::

    from ledgerguard.register.db import session_scope
    from ledgerguard.register import service

    with session_scope() as db_session:          # commits on success, rolls back on error
        incident, opened = service.open_or_join_incident(db_session=db_session, signal=sig, title="…")

SQLite notes: the file's folder is created, WAL journal and foreign keys are switched on, and every
transaction starts with ``BEGIN IMMEDIATE`` (taking SQLite's single write lock up front, waiting up
to ``timeout`` seconds for it). That makes concurrent writers queue instead of failing with
"database is locked" half-way, and makes SAVEPOINTs behave. The flip side: keep sessions short,
and do not open a second session on the same SQLite file, in the same thread, while a first one
is still in a transaction — it waits for the lock the first holds. Pure queries can use
``session_scope(read_only=True)``, which begins DEFERRED and takes no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "ledgerguard_alembic_version"
"""Alembic's version table; not the default name, so the register may share a database."""

_PG_MIGRATION_LOCK = 0x4C47_5245  # "LGRE": advisory lock taken while migrating PostgreSQL

_engines: dict[str, Engine] = {}
_migrated: set[str] = set()
_lock = threading.RLock()


def _default_url() -> str:
    from ledgerguard.config import get_settings

    return get_settings().register


def make_engine(url: str | None = None, *, timeout: float = 30.0, echo: bool = False, **kwargs: Any) -> Engine:
    """A new Engine for the register at ``url`` (default: ``get_settings().register``)."""
    url = url or _default_url()
    sa_url = make_url(url)
    if sa_url.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(sa_url, echo=echo, **kwargs)

    database = sa_url.database
    in_memory = not database or database == ":memory:" or database.startswith("file::memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("timeout", timeout)
    connect_args.setdefault("check_same_thread", False)
    engine = create_engine(sa_url, echo=echo, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Take transaction control away from the sqlite3 module (its legacy mode breaks
        # SAVEPOINT and transactional DDL); SQLAlchemy emits BEGIN below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Read-only sessions (session_scope(read_only=True)) begin DEFERRED: they take no lock.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _as_engine(engine_or_url: Engine | str | None) -> tuple[Engine, bool]:
    if isinstance(engine_or_url, Engine):
        return engine_or_url, False
    return make_engine(engine_or_url), True


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Any:
    """An Alembic ``Config`` built in code: scripts inside the package, our version table."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_table", VERSION_TABLE)
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _run_alembic(engine_or_url: Engine | str | None, action: str, revision: str) -> None:
    from alembic import command

    engine, dispose = _as_engine(engine_or_url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several processes may start at once; let one migrate, the others then see head.
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg = alembic_config(connection)
            getattr(command, action)(cfg, revision)
    finally:
        if dispose:
            engine.dispose()


def upgrade(engine_or_url: Engine | str | None = None, revision: str = "head") -> None:
    """Run the register's Alembic migrations up to ``revision`` (works from any working directory)."""
    _run_alembic(engine_or_url, "upgrade", revision)


def downgrade(engine_or_url: Engine | str | None = None, revision: str = "base") -> None:
    """Run the register's Alembic migrations down to ``revision`` (``base`` drops every table)."""
    _run_alembic(engine_or_url, "downgrade", revision)


def head_revision() -> str:
    """The newest migration of the register (what ``upgrade()`` brings a database to)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine_or_url: Engine | str | None = None) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""
    from alembic.runtime.migration import MigrationContext

    engine, dispose = _as_engine(engine_or_url)
    try:
        # A read: DEFERRED, so asking the revision never waits for another process's write lock.
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as connection:
            ctx = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()
    finally:
        if dispose:
            engine.dispose()


def session_factory(engine: Engine | None = None, *, read_only: bool = False) -> sessionmaker[Session]:
    """A ``sessionmaker`` bound to ``engine`` (default: ``get_engine()``).

    ``expire_on_commit=False``: objects stay readable after the session commits and closes.
    ``read_only`` (SQLite): transactions begin DEFERRED and so do not take the write lock — for
    reports and queries that may run while another session writes. Do not write through it.
    """
    bind = engine or get_engine()
    if read_only and bind.dialect.name == "sqlite":
        bind = bind.execution_options(sqlite_begin="DEFERRED")
    return sessionmaker(bind=bind, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None, *, read_only: bool = False) -> Iterator[Session]:
    """A session that commits when the block ends normally and rolls back when it raises.

    ``read_only=True`` for pure queries (see ``session_factory``).
    """
    session = session_factory(engine, read_only=read_only)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """The process-wide Engine for ``url`` (default settings URL), created once per URL.

    With ``migrate`` (default) the schema is upgraded to head the first time each URL is used in
    this process, so the embedded register needs no separate set-up step.
    """
    url = url or _default_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        if migrate and url not in _migrated:
            upgrade(engine)
            _migrated.add(url)
        return engine


def dispose_engines() -> None:
    """Dispose and forget every cached engine (tests, or after settings changed)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()
