"""Unit tests run against a clean configuration: no ZONESYNC_* variable from the caller's shell leaks in."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from zonesync.schemas.settings import get_settings


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Drop every ZONESYNC_* variable and the cached settings, before and after each test."""
    for name in list(os.environ):
        if name.startswith("ZONESYNC_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
