"""Fixtures for the register tests: every test runs against SQLite and PostgreSQL.

PostgreSQL is the server at LEDGERGUARD_TEST_PG_URL (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Each test gets its own database, cloned
from a template migrated once per pytest process (so xdist workers never collide), and dropped
afterwards. When the server is down the PostgreSQL half is skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from ledgerguard.register.db import make_engine, session_factory, upgrade

PG_URL = os.environ.get("LEDGERGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

_pg_state: dict[str, object] = {}


def _pg_admin() -> Engine:
    """AUTOCOMMIT engine on the maintenance database; skips the test when unreachable."""
    if "error" in _pg_state:
        pytest.skip(str(_pg_state["error"]))
    admin = _pg_state.get("admin")
    if admin is None:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        try:
            with admin.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            admin.dispose()
            safe = make_url(PG_URL).render_as_string(hide_password=True)
            _pg_state["error"] = f"PostgreSQL not reachable at {safe}: {type(exc).__name__}: {exc}".splitlines()[0]
            pytest.skip(str(_pg_state["error"]))
        _pg_state["admin"] = admin
    return admin  # type: ignore[return-value]


def _pg_url(name: str) -> str:
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _create_db(name: str, template: str | None = None) -> str:
    admin = _pg_admin()
    with admin.connect() as conn:
        clause = f' TEMPLATE "{template}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    return _pg_url(name)


def _drop_db(name: str) -> None:
    admin = _pg_state.get("admin")
    if admin is None:
        return
    with admin.connect() as conn:  # type: ignore[union-attr]
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _pg_template() -> str:
    name = _pg_state.get("template")
    if name is None:
        name = f"lg_tpl_{uuid.uuid4().hex[:12]}"
        url = _create_db(name)
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        _pg_state["template"] = name
    return name  # type: ignore[return-value]


@pytest.fixture(scope="session", autouse=True)
def _pg_cleanup() -> Iterator[None]:
    """Drop the template database when this pytest process is done."""
    yield
    template = _pg_state.get("template")
    if template:
        _drop_db(template)  # type: ignore[arg-type]
    admin = _pg_state.get("admin")
    if admin is not None:
        admin.dispose()  # type: ignore[union-attr]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_url(backend: str, tmp_path) -> Iterator[str]:
    """URL of a fresh, empty database (no tables)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'register' / 'register.sqlite'}"
        return
    name = f"lg_{uuid.uuid4().hex[:16]}"
    url = _create_db(name)
    try:
        yield url
    finally:
        _drop_db(name)


@pytest.fixture
def db_url(backend: str, tmp_path) -> Iterator[str]:
    """URL of a fresh database migrated to head."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'register.sqlite'}"
        upgrade(url)
        yield url
        return
    name = f"lg_{uuid.uuid4().hex[:16]}"
    url = _create_db(name, template=_pg_template())
    try:
        yield url
    finally:
        _drop_db(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    session = session_factory(engine)()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
