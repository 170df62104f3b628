"""Network faults for tests, in process and on loopback: no server is stopped or reconfigured.

- `Tarpit`: a port that accepts connections and never sends a byte (a server hung after accept, a load
  balancer in front of nothing). Point a zone URL at `tarpit.url(...)`.
- `FreezableProxy`: a TCP proxy to a real server. `freeze()` stops forwarding in both directions while every
  connection stays open: to the client it is a server stopped mid-statement (SIGSTOP: its kernel still
  accepts and acknowledges, nothing answers) or a network that drops packets. `thaw()` forwards again.

Both are context managers and close every socket they opened on exit.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from types import TracebackType

from sqlalchemy.engine import make_url

_POLL_SECONDS = 0.05  # how often a pump looks at its socket (and at whether it is frozen)


def _listener() -> socket.socket:
    return socket.create_server(("127.0.0.1", 0), backlog=128)


def at_port(url: str, port: int) -> str:
    """`url` (with its password) pointed at 127.0.0.1:`port`."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


class _Endpoint:
    """A listening socket served by a daemon thread; closes everything it accepted on `close()`."""

    def __init__(self) -> None:
        self._listener = _listener()
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_forever, name=type(self).__name__, daemon=True)
        self._thread.start()

    def url(self, url: str) -> str:
        """`url` (scheme, user, password, database) pointed at this endpoint."""
        return at_port(url, self.port)

    def _accept_forever(self) -> None:
        self._listener.settimeout(_POLL_SECONDS)  # closing a socket does not wake a thread blocked in accept()
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            client.settimeout(None)
            self._sockets.append(client)
            self._accepted(client)

    def _accepted(self, client: socket.socket) -> None:
        """Serve a new client connection (the tarpit holds it and does nothing)."""

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> _Endpoint:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class Tarpit(_Endpoint):
    """Accepts TCP connections and never answers (the accepted sockets are held open, never read)."""

    def __enter__(self) -> Tarpit:
        return self

    @property
    def accepted(self) -> int:
        """How many connections it has swallowed."""
        return len(self._sockets)


class FreezableProxy(_Endpoint):
    """Forwards every connection to `host:port` until `freeze()`; see the module docstring."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._frozen = threading.Event()
        super().__init__()

    def __enter__(self) -> FreezableProxy:
        return self

    def freeze(self) -> None:
        """Stop forwarding (bytes already in flight stay in the kernel's buffers, unread).

        Returns once no pump can still be forwarding a chunk it read before the freeze.
        """
        self._frozen.set()
        time.sleep(2 * _POLL_SECONDS)

    def thaw(self) -> None:
        """Forward again."""
        self._frozen.clear()

    def freeze_after(self, seconds: float) -> threading.Timer:
        """Freeze `seconds` from now (while a statement runs); returns the started timer."""
        timer = threading.Timer(seconds, self.freeze)
        timer.daemon = True
        timer.start()
        return timer

    def _accepted(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._sockets.append(upstream)
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, target), name="proxy-pump", daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        """Copy bytes from source to target while not frozen; end both directions when one side closes."""
        while not self._closed.is_set():
            if self._frozen.is_set():
                time.sleep(_POLL_SECONDS)
                continue
            try:
                readable, _, _ = select.select([source], [], [], _POLL_SECONDS)
                if not readable or self._frozen.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
            except OSError:
                break
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
