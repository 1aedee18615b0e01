"""Flows run under a real Prefect server (the test harness, tests/conftest.py), never as `.fn` alone."""

from __future__ import annotations

import pytest


@pytest.fixture
def pg_register(lg_home, monkeypatch):
    """Point the register at a fresh PostgreSQL database (skipped with the reason when it is down)."""
    import os
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from ledgerguard.config import reset_settings
    from ledgerguard.runtime import reset_runtime

    base = os.environ.get("LEDGERGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"lg_flow_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 — any failure means the server is not there
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {make_url(base).render_as_string(hide_password=True)}: "
                    f"{type(exc).__name__}")
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("LEDGERGUARD_REGISTER_URL", url)
    reset_settings()
    reset_runtime()
    yield url
    reset_runtime()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
