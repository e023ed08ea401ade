"""The cluster tests' round (``--cluster-round``: short in ``make test``, full in
``make cluster-test``) and its deadline."""

from __future__ import annotations

import pytest

from tests.support.cluster import PLANS, Plan


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A cluster round may take as long as its plan says, not the suite's 60 s."""
    plan = PLANS[config.getoption("--cluster-round")]
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            item.add_marker(pytest.mark.timeout(plan.timeout))


@pytest.fixture
def plan(request: pytest.FixtureRequest) -> Plan:
    """The round chosen on the command line."""
    return PLANS[request.config.getoption("--cluster-round")]
