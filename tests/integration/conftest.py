"""Fixtures shared by the integration tests of the push paths."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from schemas.examples.tables import internet_tables, intranet_tables
from tests.conftest import ZonePair
from tests.integration.helpers import create


@pytest.fixture
def demo(zones: ZonePair, use_zones: Callable[..., None]) -> ZonePair:
    """The demo tables in both zones (each backend), settings pointed at them."""
    create(zones.intranet, intranet_tables())
    create(zones.internet, internet_tables())
    use_zones(zones, modules="schemas.examples")
    return zones
