"""A real Prefect server and every deployment served by `ledgerguard serve`, as `up` runs them.

The machinery lives in ``tests/support/served.py`` (shared with tests/e2e); ``wait_for`` and
``api`` stay importable from here.
"""

from __future__ import annotations

import pytest

from tests.support.served import Served, api, served_stack, wait_for

__all__ = ["Served", "api", "wait_for"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, agency_template):
    from tests.support.people import approving

    # A manager approves the destructive steps the served runs pause at (the swap-in).
    with served_stack(tmp_path_factory.mktemp("served") / "home", agency_template) as stack, \
            approving(api_url=stack.api_url):
        yield stack
