"""A deterministic sample agency for the demo, drills and tests."""

from ledgerguard.sample.generator import generate_agency

__all__ = ["generate_agency"]
