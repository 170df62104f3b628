"""The torture suite's marker and its session: one Prefect server and warm workers for every drill test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ThrowawayServers
from tests.torture.session import Limits, Session

# The bounded run must fit in a few minutes: Prefect's task retry delays are shortened in the workers, a frozen
# target is thawed after a few seconds, and a run against a tarpit may take at most this long.
BOUNDED = Limits(hang_bound=45.0, fast_retries=True, freeze_seconds=8.0, command_timeout=90.0)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (deselect the drills with `-m "not torture"`)."""
    config.addinivalue_line("markers", "torture: drills with real processes and databases (tests/torture)")


@pytest.fixture(scope="session")
def torture_session(servers: ThrowawayServers) -> Iterator[Session]:
    """The torture session of this test run (started on first use, closed at the end)."""
    session = Session(servers, BOUNDED)
    yield session
    session.close()
