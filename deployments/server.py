"""The HTTP server the API runs in: uvicorn, with the limits it does not have of its own.

- **Slow clients are cut off.** A request's head must arrive within ZONESYNC_API_HEAD_SECONDS of the connection (or
  of the first byte of the next request on a kept-alive connection), its body within ZONESYNC_API_BODY_SECONDS;
  otherwise the connection is answered 408 (when nothing was answered yet) and closed. uvicorn reads heads and
  bodies without a time limit: half-sent requests would hold their connections open for ever.
- **Open connections are capped** at ZONESYNC_API_MAX_CONNECTIONS (uvicorn's `limit_concurrency`: 503 beyond); the time
  limits keep slow clients from holding the slots, so good clients are served meanwhile.
- **Oversized requests are refused as they arrive**: a path and query over MAX_TARGET bytes (414), headers over
  MAX_HEADER_BYTES (431), before the rest is read (httptools, uvicorn's parser, sets no limit).
- **Every access log line is bounded**: the path is cut at LOGGED_PATH characters, and its control characters
  escaped (uvicorn would write a 60,000-character path whole).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from zonesync.schemas.settings import get_settings

LOGGED_PATH = 200
MAX_TARGET = 8192  # bytes of path and query: no route is longer
MAX_HEADER_BYTES = 65536


class TimedHttpTools(HttpToolsProtocol):
    """uvicorn's HTTP protocol with time limits on reading a request's head and body (ZONESYNC_API_HEAD_SECONDS,
    ZONESYNC_API_BODY_SECONDS)."""

    _deadline: asyncio.TimerHandle | None = None
    _answered = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        settings = get_settings()
        self.head_seconds, self.body_seconds = settings.api_head_seconds, settings.api_body_seconds
        self._arm(self.head_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._answered = False
        if self._deadline is None:  # the next request on a kept-alive connection: its head is timed from here
            self._arm(self.head_seconds)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_TARGET:  # refused as it arrives: the rest of the line is never read
            self._refuse(_URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_bytes = getattr(self, "_header_bytes", 0) + len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(_HEADERS_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._header_bytes = 0
        self._disarm()
        self._arm(self.body_seconds)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._answered = True
        super().on_response_complete()

    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()

    def _too_slow(self) -> None:
        """The client did not send its request in time: 408 unless an answer has begun, and close."""
        self._deadline = None
        if self.transport.is_closing():
            return
        started = self.cycle is not None and not self._answered and self.cycle.response_started
        if not started:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


def _answer(status: str, error: str, detail: str) -> bytes:
    body = json.dumps({"error": error, "detail": detail}).encode()
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


_REQUEST_TIMEOUT = _answer("408 Request Timeout", "request_timeout", "the request was not sent in time")
_URI_TOO_LONG = _answer("414 URI Too Long", "uri_too_long", f"the path and query are longer than {MAX_TARGET} bytes")
_HEADERS_TOO_LARGE = _answer(
    "431 Request Header Fields Too Large", "headers_too_large", f"the headers are larger than {MAX_HEADER_BYTES} bytes"
)


class BoundedAccessLine(logging.Filter):
    """Cuts the path of uvicorn's access log line at LOGGED_PATH characters and escapes control characters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            record.args = (client, method, bounded_path(str(path)), version, status)
        return True


def bounded_path(path: str) -> str:
    """A path as a log line may show it: at most LOGGED_PATH characters, no control character."""
    shown = path[:LOGGED_PATH].encode("unicode_escape").decode("ascii")
    return shown + (f"...(+{len(path) - LOGGED_PATH} characters)" if len(path) > LOGGED_PATH else "")


def protocol_options() -> dict[str, Any]:
    """The uvicorn options for the time limits and the connection cap (`uvicorn.Config(app, **protocol_options())`)."""
    return {"http": TimedHttpTools, "limit_concurrency": get_settings().api_max_connections}
