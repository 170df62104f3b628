"""Fixtures shared by the integration tests of the update with rollback."""

from __future__ import annotations

import pytest

from schemas import settings
from tasks.push import push_records
from tests.conftest import ZonePair
from tests.integration.data import SYNCED_MERCHANT


@pytest.fixture
def synced(demo: ZonePair, monkeypatch: pytest.MonkeyPatch) -> ZonePair:
    """One merchant (SYNCED_MERCHANT), in both zones and flagged; updates through the intent record."""
    monkeypatch.setenv("ZONESYNC_TWO_PHASE", "false")
    settings.get_settings.cache_clear()
    assert push_records("merchants", [SYNCED_MERCHANT]).status == "success"
    return demo
