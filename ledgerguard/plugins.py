"""Import every module of a package once, so modules that register themselves on import
(detectors and injectors, remediation actions, sample data sets) are found without a list to keep."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

_imported: dict[str, list[ModuleType]] = {}


def import_package_modules(package: ModuleType, *, skip: set[str] = frozenset()) -> list[ModuleType]:
    """Import the package's direct submodules (not those in ``skip`` or starting with ``_``), once."""
    if package.__name__ not in _imported:
        _imported[package.__name__] = [
            importlib.import_module(f"{package.__name__}.{info.name}")
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)
            if not info.name.startswith("_") and info.name not in skip]
    return _imported[package.__name__]
