"""The business's zones for the scenarios: the demo tables in both zones, on each backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.examples.tables import internet_tables, intranet_tables
from tests.conftest import ZonePair
from tests.integration.helpers import create


@pytest.fixture
def bank(zones: ZonePair, use_zones: Callable[..., None]) -> ZonePair:
    """The bank's intranet (system of record) and internet (payment channels) zones, demo tables created."""
    create(zones.intranet, intranet_tables())
    create(zones.internet, internet_tables())
    use_zones(zones, modules="schemas.examples")
    return zones


@pytest.fixture
def unreachable_internet(bank: ZonePair, tmp_path: Path) -> str:
    """A URL of the internet zone's kind whose database cannot be reached."""
    if bank.internet_backend == "sqlite":
        (tmp_path / "unplugged.db").mkdir()
        return f"sqlite:///{tmp_path / 'unplugged.db'}"
    scheme = "postgresql" if bank.internet_backend == "postgresql" else "mysql"
    return f"{scheme}://channel:Ch4nnel-pw@127.0.0.1:1/internet"
