"""How zonesync connects to one kind of database: the names its URLs use, the driver, the URL parameters it
passes on, the arguments and hooks that bound every wait, and the URL and query connectorx is given. Each
database module describes its own in a subclass; `zonesync.tasks.zones.engines` applies it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

from sqlalchemy.engine import URL, Engine

from zonesync.schemas.errors import ConfigError
from zonesync.tasks.dialects.limits import Limits

# URL parameters that settings own: a URL may not set them behind the settings' back.
_SETTING_OWNED = {"connect_timeout": "ZONESYNC_CONNECT_TIMEOUT", "timeout": "ZONESYNC_LOCK_TIMEOUT"}


class SilenceWatch(Protocol):
    """What an engine's watch over silent servers tells its error hook: the ids of the driver connections it
    gave up (`zonesync.tasks.dialects.postgresql_watchdog`)."""

    cut: set[int]


class Connecting(ABC):
    """Connection rules of one database; the defaults suit a server that takes no URL parameters."""

    url_names: ClassVar[tuple[str, ...]] = ()  # the URL schemes (and SQLAlchemy dialect names) it answers to
    aliases: ClassVar[dict[str, str]] = {}  # URL schemes SQLAlchemy no longer knows, and the name they stand for
    driver: ClassVar[str] = ""  # the SQLAlchemy driver zonesync uses ("" for the database's default)
    replaced_drivers: ClassVar[frozenset[str]] = frozenset()  # drivers a URL may name that zonesync swaps for its own
    url_parameters: ClassVar[frozenset[str]] = frozenset()  # passed on to the driver and connectorx alike

    def normalize(self, url: URL, setting: str) -> URL:
        """The URL with zonesync's driver (and, for a file database, an absolute path)."""
        backend = url.get_backend_name()
        name = self.aliases.get(backend, backend)
        if name != backend:
            url = url.set(drivername=name)
        self.check_query(url, setting)
        if self.driver and url.get_driver_name() in {"", name, *self.replaced_drivers}:
            url = url.set(drivername=f"{name}+{self.driver}")
        return url

    def check_query(self, url: URL, setting: str) -> None:
        """Refuse URL parameters that would not reach both readers (driver and connectorx), naming the setting."""
        for name, value in url.query.items():
            if name in _SETTING_OWNED:
                raise ConfigError(f"{setting}: set the {name!r} URL parameter with {_SETTING_OWNED[name]} instead")
            if name not in self.url_parameters:
                accepted = ", ".join(sorted(self.url_parameters)) or "none"
                raise ConfigError(
                    f"{setting}: URL parameter {name!r} is not supported for {url.get_backend_name()} "
                    f"(accepted: {accepted})"
                )
            if not isinstance(value, str):
                raise ConfigError(f"{setting}: URL parameter {name!r} is given more than once")

    def prepare(self, url: URL) -> None:  # noqa: B027 (an optional hook: most databases need nothing)
        """Anything to do before the first connection (SQLite creates the file's directory)."""

    def missing(self, url: URL) -> str | None:
        """Where a database would be created by connecting, if it is not there yet (a file); None: it exists, or
        connecting never creates one (a server)."""
        return None

    def connect_args(self, url: URL, limits: Limits) -> dict[str, Any]:
        """The driver arguments that bound every wait of a connection (and keep it in UTC, strict, full Unicode)."""
        return {}

    def install(self, engine: Engine, limits: Limits) -> SilenceWatch | None:
        """Engine hooks the database needs (pragmas, a bounded connect); a watch over silent servers, if any."""
        return None

    @abstractmethod
    def connectorx_url(self, url: URL, limits: Limits) -> str:
        """The URL connectorx expects (no '+driver'), carrying the limits it can take."""

    def reader_url(self, engine: Engine, limits: Limits) -> str:
        """The connectorx URL of a read on `engine` (where the driver's own connections may decide a detail)."""
        return self.connectorx_url(engine.url, limits)

    def connectorx_query(self, sql: str, limits: Limits) -> str:
        """The SQL connectorx runs for `sql` (MariaDB adds its session limits: connectorx runs no init command)."""
        return sql
