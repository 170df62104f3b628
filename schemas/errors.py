"""One error hierarchy for zonesync: transient errors are retried, terminal ones are reported.

Driver exceptions are translated at the boundary with `raise translate(...) from exc`
(`zonesync.tasks.zones.failures`, which asks the database's dialect what the driver's exception means); the
translated message never contains a connection URL or password.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


class SyncError(Exception):
    """Base of every error zonesync raises on purpose."""

    transient = False

    def __init__(
        self, message: str, *, mapping: str | None = None, keys: Sequence[Any] = (), public: str | None = None
    ) -> None:
        super().__init__(message)
        self.mapping = mapping
        self.keys = tuple(keys)
        self.public = public  # what a caller is told instead, when the message quotes a database

    def __str__(self) -> str:
        return self._in_mapping(super().__str__())

    @property
    def for_caller(self) -> str:
        """The message for whoever sent the request (an HTTP client, a result object): zonesync's own words,
        never a database's text (constraint names, hosts); the log has that."""
        return self._in_mapping(self.public) if self.public else str(self)

    def _in_mapping(self, message: str) -> str:
        return f"mapping '{self.mapping}': {message}" if self.mapping else message


class TransientSyncError(SyncError):
    """Connection lost, deadlock, lock timeout: running again may succeed."""

    transient = True


class TerminalSyncError(SyncError):
    """Validation, mapping, constraint or configuration problems: running again will not help."""


class ConfigError(TerminalSyncError):
    """A user mistake in settings or arguments (bad URL, unknown mapping, missing table)."""


class MappingError(ConfigError):
    """A `SyncMapping` declaration that cannot work."""


class RefusedValue(TerminalSyncError):
    """A bulk load refused a value of some row (truncation, bad value): splitting the batch isolates it."""


class KeyCollision(RefusedValue):
    """The target's collation calls a row's key equal to another key (MariaDB pads trailing blanks and mostly
    folds case): writing it would overwrite that other row."""

    reason = "duplicate_key"


class NoAnswer(TransientSyncError):
    """A zone did not answer within its limits (a frozen server, a network that drops packets)."""


# A driver exception about a limit (a timeout, a silent server) carries its clear line in this attribute, set
# by the engine that knows the limit (tasks/zones/engines.py); `short_message` prefers it to the driver's text.
DIAGNOSIS = "zonesync_diagnosis"
# Set (true) with it when the server went silent for the whole limit: the work is not run again at once.
NO_ANSWER = "zonesync_no_answer"


_URL_PATTERN = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"]+", re.IGNORECASE)
_PASSWORD_PATTERN = re.compile(r"(password\s*[=:]\s*)(\S+)", re.IGNORECASE)


def scrub(text: str) -> str:
    """Remove anything that looks like a connection URL or a password from a message."""
    text = _URL_PATTERN.sub("<url hidden>", text)
    return _PASSWORD_PATTERN.sub(r"\1***", text)


# A database quotes names and values alike. A quoted part is kept where the words just before it say that it names
# something, or in backticks (which quote names only); any other quoted part is a value, and is hidden. A closing
# quote is one not followed by a letter, so a value holding a quote (O'Brien) is hidden whole.
_QUOTED = re.compile(r"""(?<!\w)(?P<quote>['"`])(?P<body>.*?)(?P=quote)(?!\w)""", re.DOTALL)
_NAMING = re.compile(
    r"(?:\b(?:column|key|constraint|relation|table|index|type|enum|encoding|schema|database|trigger|sequence"
    r"|function|user|role|savepoint|host|server(?:\s+(?:on|at))?)\s+|['\"`]\.)$",
    re.IGNORECASE,
)  # fmt: skip
_BYTES = re.compile(r"\b0x[0-9a-f]+(?:\s+0x[0-9a-f]+)*", re.IGNORECASE)  # a byte sequence of some value


def hide_values(text: str) -> str:
    """A database's message with the values it quotes hidden (names kept): record values must not reach a log,
    an artifact, Prefect or an HTTP answer."""

    def hidden(match: re.Match[str]) -> str:
        before = text[max(0, match.start() - 40) : match.start()]
        if match["quote"] == "`" or _NAMING.search(before):
            return match[0]
        return f"{match['quote']}…{match['quote']}"

    return _BYTES.sub("0x…", _QUOTED.sub(hidden, text))


def short_message(exc: BaseException) -> str:
    """The first line of a driver error, scrubbed, values hidden, without SQLAlchemy's background links."""
    original = getattr(exc, "orig", None) or exc
    diagnosis = getattr(original, DIAGNOSIS, None)
    if diagnosis:
        return scrub(diagnosis)[:500]
    lines = [line for line in _driver_text(original).strip().splitlines() if line.strip()]
    return scrub(hide_values(lines[0] if lines else type(original).__name__))[:500]


def _driver_text(original: BaseException) -> str:
    """The error's text; a driver that raises with (number, message) gives "message (number)"."""
    args = original.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return f"{args[1]} ({args[0]})"
    return str(original)
