"""The HTTP entry point's gate, in front of everything else (plain ASGI: a few microseconds per request).

- Every request but `GET /health` shows a client's key (`Authorization: Bearer <key>`): 401 without one or with a
  wrong one, before anything about the request is looked at, so that nothing (not even whether a mapping
  exists) is told to whoever has no key.
- A path holding a control character (a decoded `%0A`, ...) is refused with 400 before anything else: no route
  may serve it (Starlette's patterns end in `$`, which also matches before a trailing newline).
- Scopes are not decided here but by the route that serves a mapping (`deployments/api.py`): the one place that
  knows which mapping a request reaches. The authenticated client travels in the request's scope (CLIENT).
- A path and query longer than MAX_TARGET bytes are refused with 414; an address that sent too many wrong keys
  is refused with 429 before its key is looked at (`deployments/auth_limit.py`).
- A body longer than the limit is refused with 413 before it is read: at once when Content-Length says so,
  else as soon as the bytes received pass the limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from prefect.logging import get_logger

from zonesync.deployments.auth_limit import FailedAuthLimit
from zonesync.deployments.server import MAX_TARGET, bounded_path
from zonesync.schemas.api_clients import ApiClient

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health"})
CLIENT = "zonesync_api_client"  # the scope key holding the authenticated ApiClient (routes check its scopes)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
logger = get_logger("zonesync.api")
# With a body refused unread, the connection is closed: uvicorn would otherwise read the rest to discard it.
_CLOSE = {"connection": "close"}


class BodyTooLarge(Exception):
    """The body passed the limit while it was being received."""


class Authenticates(Protocol):
    """Tells which declared client a key belongs to (`deployments/watched_clients.py`: as the file says now)."""

    def authenticate(self, key: str) -> ApiClient | None: ...


class Guard:
    """Authentication, control characters and the body limit (`clients` None: no authentication, local development
    only)."""

    def __init__(
        self, app: ASGIApp, *, clients: Authenticates | None, max_body_bytes: int, max_failed_auth: int = 30
    ) -> None:
        self.app, self.clients, self.max_body_bytes = app, clients, max_body_bytes
        self.failed_auth = FailedAuthLimit(max_failed_auth)

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, error = refusal[0], refusal[1]
            who = f"client {scope[CLIENT].name!r}" if CLIENT in scope else "no valid key"
            if status != 429:  # the limit logs its address once per window
                logger.warning("refused %s %s (%s): %d %s", scope["method"][:16], bounded_path(scope["path"]), who,
                               status, error)  # fmt: skip
            await _answer(send, *refusal)
            return
        await self._within_limit(scope, receive, send)

    def _refusal(self, scope: Message) -> tuple[int, str, str, dict[str, str]] | None:
        """(status, error, detail, headers) when the request may not go on."""
        headers = dict(scope["headers"])
        if _CONTROL.search(scope["path"]):
            return 400, "invalid_path", "the path holds a control character", _CLOSE
        if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > MAX_TARGET:
            return 414, "uri_too_long", f"the path and query are longer than {MAX_TARGET} bytes", _CLOSE
        if self.clients is not None and scope["path"] not in OPEN_PATHS:
            address = (scope.get("client") or ("unknown",))[0]
            wait = self.failed_auth.retry_after(address)
            if wait is not None:
                detail = "too many failed authentications from this address; try again later"
                return 429, "too_many_failed_authentications", detail, {"retry-after": str(wait)} | _CLOSE
            client = self.clients.authenticate(_bearer(headers))
            if client is None:
                self.failed_auth.failed(address)
                detail = "send a client's key as 'Authorization: Bearer <key>' (`zonesync api-key new` makes one)"
                return 401, "unauthorized", detail, {"www-authenticate": "Bearer"}
            scope[CLIENT] = client
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return 413, "body_too_large", self._too_large, _CLOSE
        return None

    async def _within_limit(self, scope: Message, receive: Receive, send: Send) -> None:
        """Run the app, counting the body's bytes as they arrive; 413 if they pass the limit."""
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await _answer(send, 413, "body_too_large", self._too_large, _CLOSE)

    @property
    def _too_large(self) -> str:
        return f"the body is larger than {self.max_body_bytes} bytes (ZONESYNC_API_MAX_BODY_BYTES)"


def _bearer(headers: dict[bytes, bytes]) -> str:
    scheme, _, credential = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


async def _answer(send: Send, status: int, error: str, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
