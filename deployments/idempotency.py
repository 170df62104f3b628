"""The HTTP entry point's `Idempotency-Key` header: a write sent again with the same key gets its first answer
again (`tasks/bookkeeping/idempotency.py` keeps the answers and says which request may be served)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from prefect.logging import get_logger
from starlette.concurrency import run_in_threadpool

from zonesync.schemas.errors import SyncError
from zonesync.tasks.bookkeeping.idempotency import IdempotencyKeys, Refusal, Replay, request_sha256, valid_key

HEADER = "idempotency-key"
REPLAYED = {"idempotent-replayed": "true"}
logger = get_logger("zonesync.api")


class AnsweredOnce:
    """Serves a write at most once per client and Idempotency-Key (a request without the header: every time)."""

    def __init__(self, keys: IdempotencyKeys) -> None:
        self.keys = keys

    @classmethod
    def kept_for(cls, intranet: Any, hours: float) -> AnsweredOnce:
        return cls(IdempotencyKeys(intranet, timedelta(hours=hours)))

    async def answer(
        self, request: Request, client: str, mapping: str, body: Any, serve: Callable[[], Awaitable[Response]],
        refuse: Callable[[int, str, str], JSONResponse],
    ) -> Response:  # fmt: skip
        """`serve()`'s answer, or the one kept for this request's key, or why the key cannot serve it."""
        key = request.headers.get(HEADER)
        if key is None:
            return await serve()
        if not valid_key(key):
            return refuse(400, "invalid_idempotency_key", "Idempotency-Key: 1 to 255 visible ASCII characters")
        fingerprint = request_sha256(request.method, mapping, body)
        taken = await run_in_threadpool(self.keys.take, client, key, fingerprint)
        if isinstance(taken, Replay):
            return Response(taken.answer, taken.status, headers=REPLAYED, media_type="application/json")
        if isinstance(taken, Refusal):
            refused = refuse(taken.status, taken.error, taken.detail)
            if taken.status == 409:
                refused.headers["retry-after"] = "1"
            return refused
        try:
            response = await serve()
        except BaseException:
            await run_in_threadpool(self.keys.keep, client, key, 500, "")  # frees the key: a retry tries again
            raise
        try:
            await run_in_threadpool(self.keys.keep, client, key, response.status_code, bytes(response.body).decode())
        except SyncError as exc:  # the write stands and is answered; a retry meets the key taken, then taken over
            logger.error("the answer to an Idempotency-Key of client %r was not kept: %s", client, exc)
        return response
