"""What a database driver's exceptions mean: worth retrying, a lock conflict, why a row was refused, which limit
was reached. Each database module describes its driver's codes (SQLSTATEs, error numbers, messages) in a
subclass; `zonesync.tasks.zones.failures` asks the one whose driver raised the exception."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

# The reasons a database refuses a row, as callers and the quarantine table name them.
Refusal = Literal["duplicate_key", "missing_required", "invalid_value"]
# The limit an error says was reached (ZONESYNC_STATEMENT_TIMEOUT, ZONESYNC_LOCK_TIMEOUT), or "silent": the
# client gave the connection up because the server sent nothing at all.
LimitReached = Literal["statement", "lock", "silent"]

# Words of a lost or refused connection, whatever the driver (it gives no code for most of them).
DISCONNECT_WORDS = ("connection refused", "could not connect", "server closed", "lost connection",
                     "timeout expired", "timed out")  # fmt: skip


@dataclass(frozen=True)
class RefusedAt:
    """Where a database says it refused a row: the columns and the constraint it names (names of the schema, never
    a value), as far as its message tells."""

    columns: tuple[str, ...] = ()
    constraint: str | None = None


NOWHERE = RefusedAt()


def named(patterns: tuple[re.Pattern[str], ...], text: str) -> str | None:
    """The name the first matching pattern captures. Patterns anchor at the end of the message, where the database
    puts its names after any value it quotes: a value cannot pass itself off as a name."""
    return next((match[1] for pattern in patterns if (match := pattern.search(text))), None)


class DriverErrors:
    """One driver's exceptions. The codes are matched against `code(original)`."""

    driver_errors: ClassVar[tuple[type[BaseException], ...]] = ()  # the base classes of the driver's exceptions
    transient_codes: ClassVar[frozenset[str | int]] = frozenset()  # try again: the same work may succeed
    transient_prefixes: ClassVar[tuple[str, ...]] = ()  # SQLSTATE classes that are transient as a whole
    deadlock_codes: ClassVar[frozenset[str | int]] = frozenset()  # chosen as a deadlock's victim (at once)
    lock_timeout_codes: ClassVar[frozenset[str | int]] = frozenset()  # a lock waited for up to the lock limit
    refusal_codes: ClassVar[dict[Refusal, frozenset[str | int]]] = {}
    row_level_codes: ClassVar[frozenset[str | int]] = frozenset()  # row refusals not raised as Integrity/DataError
    disconnect_words: ClassVar[tuple[str, ...]] = DISCONNECT_WORDS

    def owns(self, original: BaseException) -> bool:
        """Whether this driver raised `original`."""
        return isinstance(original, self.driver_errors)

    def code(self, original: BaseException) -> str | int | None:
        """The error's code (a SQLSTATE, an error number), or None when the driver gives none."""
        return None

    def message(self, original: BaseException) -> str:
        """The error's own text, without the code."""
        return str(original)

    def is_transient(self, original: BaseException) -> bool:
        """A lost connection, a deadlock, a lock timeout, a server shutting down: running again may succeed."""
        code = self.code(original)
        return code in self.transient_codes or (isinstance(code, str) and code.startswith(self.transient_prefixes))

    def is_disconnect(self, original: BaseException) -> bool:
        """Whether the error's text says the connection was lost or refused."""
        text = str(original).lower()
        return any(word in text for word in self.disconnect_words)

    def is_deadlock(self, original: BaseException) -> bool:
        """The database chose this transaction as a deadlock's victim: rolled back whole, it may run again now."""
        return self.code(original) in self.deadlock_codes

    def is_lock_timeout(self, original: BaseException) -> bool:
        """A lock was waited for up to the lock limit: the transaction was rolled back (on MariaDB the statement)."""
        return self.code(original) in self.lock_timeout_codes

    def refusal(self, original: BaseException) -> Refusal | None:
        """Why the database refused a row, or None when the error is not a refusal of some row's values."""
        code = self.code(original)
        return next((reason for reason, codes in self.refusal_codes.items() if code in codes), None)

    def refused_at(self, original: BaseException) -> RefusedAt:
        """The columns and constraint a refusal names (none when the driver's message does not say)."""
        return NOWHERE

    def is_row_level(self, original: BaseException) -> bool:
        """A refusal of some row that the driver raises as neither IntegrityError nor DataError."""
        return self.code(original) in self.row_level_codes

    def limit_reached(self, original: BaseException) -> LimitReached | None:
        """Which of zonesync's limits the error reports, if any."""
        return None
