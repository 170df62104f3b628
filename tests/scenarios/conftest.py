"""The business's zones for the scenarios: the demo tables in both zones, on each backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ZonePair
from tests.integration.helpers import unreachable_url


@pytest.fixture
def bank(demo: ZonePair) -> ZonePair:
    """The bank's intranet (system of record) and internet (payment channels) zones, demo tables created."""
    return demo


@pytest.fixture
def unreachable_internet(bank: ZonePair, tmp_path: Path) -> str:
    """A URL of the internet zone's kind whose database cannot be reached."""
    return unreachable_url(bank.internet_backend, tmp_path)
