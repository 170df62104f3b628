"""The HTTP entry point's audit trail as it is written: each answered write is recorded before it is answered,
and the entries of concurrent requests go together in one statement."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from zonesync.tasks.bookkeeping.audit import AuditEntry, record


class AuditTrail:
    """Records each answered write (`tasks/bookkeeping/audit.py`) before it is answered; entries that arrive while
    a write is under way go together in the next one (one statement for many concurrent requests)."""

    def __init__(self, intranet: sa.Engine) -> None:
        self.intranet = intranet
        self._waiting: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, entry: AuditEntry) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((entry, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        await future

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await run_in_threadpool(record, self.intranet, [entry for entry, _ in batch])
                finally:  # `record` logs its own failures: the writes it describes stand either way
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._writer = None
