"""Shared fixtures: an isolated LedgerGuard home, a small real sample agency, a real SMTP sink."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Prefect reads these when it is first imported; set them before any test module imports it.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Task results a suspended run replays are persisted; keep the test runs' out of ~/.prefect.
os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH",
                      str(Path(tempfile.gettempdir()) / "ledgerguard-test-results"))

SMALL_CLIENTS = 5


@pytest.fixture(scope="session")
def agency_template(tmp_path_factory) -> Path:
    """One small generated agency per test process; tests get their own copy."""
    from datetime import datetime, timezone

    from ledgerguard.sample import generate_agency

    root = tmp_path_factory.mktemp("agency-template") / "agency"
    generate_agency(root, clients=SMALL_CLIENTS, nights=3, seed=11, now=datetime.now(timezone.utc))
    without_quiet_hours(root)
    return root


def without_quiet_hours(agency_root: Path) -> None:
    """No level waits for quiet hours: what a test sends must not depend on the hour it runs at.
    Tests of quiet hours write their own window (tests/oncall)."""
    import yaml

    path = agency_root / "oncall" / "roster.yaml"
    roster = yaml.safe_load(path.read_text(encoding="utf-8"))
    roster["quiet_hours"]["levels"] = []
    path.write_text(yaml.safe_dump(roster, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture
def agency(agency_template, tmp_path):
    """A loaded copy of the small agency, for core tests that need no LedgerGuard home."""
    from ledgerguard.agency import load_agency

    root = tmp_path / "agency"
    shutil.copytree(agency_template, root)
    return load_agency(root)


@pytest.fixture
def scratch(tmp_path) -> Path:
    path = tmp_path / "scratch"
    path.mkdir()
    return path


@pytest.fixture
def lg_home(tmp_path, monkeypatch) -> Path:
    """A fresh LedgerGuard home: its own register, reports, scratch and settings."""
    from ledgerguard.config import reset_settings
    from ledgerguard.runtime import reset_runtime

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LEDGERGUARD_HOME", str(home))
    for name in ("LEDGERGUARD_REGISTER_URL", "LEDGERGUARD_AGENCY_DIR", "LEDGERGUARD_CONTACTS_FILE",
                 "LEDGERGUARD_LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    reset_runtime()
    yield home
    reset_runtime()
    reset_settings()


@pytest.fixture
def agency_dir(lg_home, agency_template) -> Path:
    target = lg_home / "agency"
    shutil.copytree(agency_template, target)
    return target


@pytest.fixture
def smtp_sink(lg_home, monkeypatch):
    """A real SMTP server on a free local port; messages land as .eml files in <home>/mail."""
    from ledgerguard.channels.smtp_sink import SmtpSink
    from ledgerguard.config import reset_settings
    from ledgerguard.runtime import reset_runtime

    sink = SmtpSink(lg_home / "mail", host="127.0.0.1", port=0)
    sink.start()
    monkeypatch.setenv("LEDGERGUARD_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("LEDGERGUARD_SMTP_PORT", str(sink.port))
    reset_settings()
    reset_runtime()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # The heartbeat thread costs ~1 s per synchronous flow call (shared notes); tests don't need it.
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture
def live_unattended(prefect_server, agency_dir, smtp_sink):
    """Prefect, a sample agency and a mail server; nobody answers approval forms."""
    return {"agency_dir": agency_dir, "sink": smtp_sink}


@pytest.fixture
def live(live_unattended):
    """Everything a flow needs, and a person with an approving role who approves every
    destructive step that asks (``live["approvals"]`` lists the answers given)."""
    from tests.support.people import approving

    with approving() as given:
        yield {**live_unattended, "approvals": given}


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
    name = f"lg_test_{uuid.uuid4().hex[:12]}"
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
