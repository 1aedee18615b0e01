from __future__ import annotations

import pytest

from ledgerguard.catalog import load_catalog
from ledgerguard.config import PROJECT_ROOT


@pytest.fixture(scope="session")
def catalog():
    return load_catalog(PROJECT_ROOT / "catalog")
