"""Flows run under a real Prefect server (the test harness, tests/conftest.py), never as `.fn` alone."""

from __future__ import annotations
