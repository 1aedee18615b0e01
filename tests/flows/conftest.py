"""Flows run under a real Prefect server (the test harness), never as `.fn` alone."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # The heartbeat thread costs ~1 s per synchronous flow call (shared notes); tests don't need it.
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture
def live(prefect_server, agency_dir, smtp_sink):
    """Everything a flow needs: Prefect, a sample agency and a mail server."""
    return {"agency_dir": agency_dir, "sink": smtp_sink}
