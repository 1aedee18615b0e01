from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ledgerguard.config import PROJECT_ROOT

CATALOG_DIR = PROJECT_ROOT / "catalog"


@pytest.fixture
def catalog_copy(tmp_path: Path) -> Path:
    """A writable copy of the real catalog directory."""
    target = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, target)
    return target


@pytest.fixture
def no_templates(tmp_path: Path) -> Path:
    """An empty templates dir, so template names are not checked."""
    path = tmp_path / "templates"
    path.mkdir()
    return path
