"""Idempotency keys of the HTTP entry point (bookkeeping table `api_idempotency`, intranet zone).

A client that sends `Idempotency-Key: <key>` with a write, and never gets the answer (a timeout, a dropped
connection), sends the same request with the same key again and is given the first answer again, not a second
write. The key is the client's own (two clients may use the same one). A request is taken by inserting its row
before anything is written, so two requests with one key cannot both run:

| the key was | same request (method, mapping, body) | another request |
| --- | --- | --- |
| never seen (or seen more than the retention ago) | served, its answer kept | served, its answer kept |
| answered | the kept answer, replayed | 422 `idempotency_key_reused` |
| being served | 409 `idempotency_key_in_flight` (retry after a second) | 422 `idempotency_key_reused` |
| taken by a request that died (`TAKEN_SECONDS` ago) | served again, taken over | 422 `idempotency_key_reused` |

Only final answers are kept: a 5xx (a zone unavailable) frees the key, so the retry tries again. A request served
again after its first try died cannot write twice either: a record identical to the stored one is answered as
already there (`tasks/push/pusher.py`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.tasks.bookkeeping.tables import api_idempotency, missing_table, utc_now
from zonesync.tasks.zones.engines import in_transaction
from zonesync.tasks.zones.failures import translate

TAKEN_SECONDS = 60.0  # a request still unanswered after this long died with its process: the key may be taken over
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    """The answer kept for this key and request (its JSON text)."""

    status: int
    answer: str


@dataclass(frozen=True)
class Refusal:
    """This key cannot serve this request now."""

    status: int
    error: str
    detail: str


def valid_key(key: str) -> bool:
    """1 to 255 visible ASCII characters (what the header may carry, and what a log line can show)."""
    return 0 < len(key) <= MAX_KEY_LENGTH and all("!" <= character <= "~" for character in key)


def request_sha256(method: str, mapping: str, body: Any) -> str:
    """A fingerprint of the request: its method, mapping and body (parsed, so spacing and key order do not count)."""
    canonical = json.dumps([method, mapping, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class IdempotencyKeys:
    """The keys of the intranet zone's `api_idempotency`; `retention` is how long an answer is kept."""

    intranet: Engine
    retention: timedelta

    def take(self, client: str, key: str, fingerprint: str) -> Replay | Refusal | None:
        """Take the key for this request (None: serve it), or what to answer instead (see the module docstring)."""
        now = utc_now()
        for attempt in (1, 2):
            try:
                return in_transaction(self.intranet, lambda conn: self._take(conn, client, key, fingerprint, now))
            except sa.exc.IntegrityError as exc:  # the same key taken at the same moment: look at it again
                if attempt == 2:
                    raise translate(exc, what="taking the idempotency key (api_idempotency)") from exc
            except (sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:
                missing = missing_table(exc, api_idempotency)
                raise missing or translate(exc, what="taking the idempotency key (api_idempotency)") from exc
            except sa.exc.SQLAlchemyError as exc:
                raise translate(exc, what="taking the idempotency key (api_idempotency)") from exc
        raise AssertionError("unreachable")

    def keep(self, client: str, key: str, status: int, answer: str) -> None:
        """Keep the answer given for the key (a 5xx frees the key instead: the client's retry tries again)."""
        row = api_idempotency.c
        mine = sa.and_(row.client == client, row.idempotency_key == key)
        if status >= 500:
            statement: sa.Executable = sa.delete(api_idempotency).where(mine, row.status.is_(None))
        else:
            statement = sa.update(api_idempotency).where(mine).values(status=status, answer=answer)
        try:
            in_transaction(self.intranet, lambda conn: conn.execute(statement))
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, what="keeping the answer of an idempotency key (api_idempotency)") from exc

    def _take(self, conn: Connection, client: str, key: str, fingerprint: str, now: datetime) -> Any:
        row = api_idempotency.c
        mine = sa.and_(row.client == client, row.idempotency_key == key)
        # Answers older than the retention are gone: this key, and any of this client's, may be used anew.
        conn.execute(sa.delete(api_idempotency).where(row.client == client, row.created_at < now - self.retention))
        found = conn.execute(sa.select(row.request_sha256, row.status, row.answer, row.created_at).where(mine)).first()
        if found is None:
            inserted = sa.insert(api_idempotency).values(client=client, idempotency_key=key,
                                                         request_sha256=fingerprint, created_at=now)  # fmt: skip
            conn.execute(inserted)  # a request taking the same key at this moment makes this fail: it is served
            return None
        if found.request_sha256 != fingerprint:
            detail = "this Idempotency-Key was used for another request; use a new key for a new request"
            return Refusal(422, "idempotency_key_reused", detail)
        if found.status is not None:
            return Replay(found.status, found.answer)
        if found.created_at > now - timedelta(seconds=TAKEN_SECONDS):
            return Refusal(409, "idempotency_key_in_flight", "a request with this Idempotency-Key is being served")
        taken = sa.update(api_idempotency).where(mine, row.status.is_(None), row.created_at == found.created_at)
        if conn.execute(taken.values(created_at=now)).rowcount != 1:
            return Refusal(409, "idempotency_key_in_flight", "a request with this Idempotency-Key is being served")
        return None
