"""A small generated agency per test (copied from one generated per session, for speed)."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ledgerguard.agency import load_agency
from ledgerguard.sample import generate_agency

SMALL_CLIENTS = 5


@pytest.fixture(scope="session")
def agency_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("agency-template") / "agency"
    generate_agency(root, clients=SMALL_CLIENTS, nights=3, seed=11, now=datetime.now(timezone.utc))
    return root


@pytest.fixture
def agency(agency_template, tmp_path):
    root = tmp_path / "agency"
    shutil.copytree(agency_template, root)
    return load_agency(root)


@pytest.fixture
def scratch(tmp_path) -> Path:
    path = tmp_path / "scratch"
    path.mkdir()
    return path
