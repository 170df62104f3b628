"""Settings: defaults, environment parsing, and URLs that stay secret."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from zonesync.schemas.errors import ConfigError
from zonesync.schemas.settings import Settings, get_settings

SECRET_URL = "postgresql://sync_user:s3cret-pw@db.internal:5432/payments"


def test_defaults_are_the_embedded_sqlite_files_and_the_demo_mappings() -> None:
    settings = get_settings()
    assert settings.intranet_url.get_secret_value() == "sqlite:///.zonesync/intranet.db"
    assert settings.internet_url.get_secret_value() == "sqlite:///.zonesync/internet.db"
    assert settings.mapping_modules == ["zonesync.schemas.examples"]
    assert settings.batch_size == 20_000


def test_urls_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZONESYNC_INTRANET_URL", SECRET_URL)
    monkeypatch.setenv("ZONESYNC_INTERNET_URL", "mysql://web@dmz/shop")
    settings = get_settings()
    assert settings.url_for("intranet").get_secret_value() == SECRET_URL
    assert settings.url_for("internet").get_secret_value() == "mysql://web@dmz/shop"


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    before = get_settings()
    monkeypatch.setenv("ZONESYNC_BATCH_SIZE", "10")
    assert get_settings() is before
    get_settings.cache_clear()
    assert get_settings().batch_size == 10


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("shop.mappings", ["shop.mappings"]),
        ("zonesync.schemas.examples,shop.mappings", ["zonesync.schemas.examples", "shop.mappings"]),
        (" zonesync.schemas.examples , shop.mappings ,", ["zonesync.schemas.examples", "shop.mappings"]),
    ],
)
def test_mapping_modules_are_comma_separated(monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]) -> None:
    monkeypatch.setenv("ZONESYNC_MAPPING_MODULES", raw)
    assert get_settings().mapping_modules == expected


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("1000", 1000), ("5000000", 5_000_000)])
def test_batch_size_within_bounds_is_accepted(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int) -> None:
    monkeypatch.setenv("ZONESYNC_BATCH_SIZE", raw)
    assert get_settings().batch_size == expected


@pytest.mark.parametrize("raw", ["0", "-5", "5000001", "lots"])
def test_batch_size_out_of_bounds_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ZONESYNC_BATCH_SIZE", raw)
    with pytest.raises(ConfigError, match="ZONESYNC_BATCH_SIZE"):
        get_settings()


def test_urls_are_secret_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZONESYNC_INTRANET_URL", SECRET_URL)
    settings = get_settings()
    assert isinstance(settings.intranet_url, SecretStr)
    assert isinstance(settings.internet_url, SecretStr)


@pytest.mark.parametrize("render", [repr, str, lambda s: s.model_dump_json()], ids=["repr", "str", "json"])
def test_urls_never_appear_when_settings_are_printed(monkeypatch: pytest.MonkeyPatch, render) -> None:
    monkeypatch.setenv("ZONESYNC_INTRANET_URL", SECRET_URL)
    monkeypatch.setenv("ZONESYNC_INTERNET_URL", SECRET_URL)
    text = render(get_settings())
    assert "s3cret-pw" not in text
    assert "db.internal" not in text


def test_settings_can_be_built_without_the_environment() -> None:
    settings = Settings(intranet_url=SecretStr(SECRET_URL), batch_size=7)
    assert settings.url_for("intranet").get_secret_value() == SECRET_URL
    assert settings.batch_size == 7


def test_business_timezone_defaults_to_utc_and_reads_iana_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings().business_timezone == "UTC"
    monkeypatch.setenv("ZONESYNC_BUSINESS_TIMEZONE", "Asia/Jakarta")
    get_settings.cache_clear()
    assert get_settings().business_timezone == "Asia/Jakarta"


def test_an_unknown_business_timezone_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZONESYNC_BUSINESS_TIMEZONE", "Mars/Olympus")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"ZONESYNC_BUSINESS_TIMEZONE: .*Mars/Olympus"):
        get_settings()
