"""A small keep-alive HTTP/1.1 client for the replicas: the gateway's proxy path, lean.

Profiling the gateway against an instant upstream put a large share of its CPU per
request in the general-purpose client (per-request timers, tracing hooks, cookie and
header machinery the proxy never uses). This client does only what the proxy needs:
``POST`` (or ``GET``) a body to ``http://host:port/path`` over a pooled connection,
hand back the status and headers as soon as they arrive, then the body whole or chunk
by chunk, parsed by ``httptools`` (uvicorn's parser). No TLS: replicas are reached on
the cluster network; the peer link keeps its own mutual-TLS client.

Errors follow :mod:`serving.routing.upstream`: before the status line arrives,
:class:`~serving.routing.errors.UpstreamUnreachable` (a reused connection the server
had closed is retried once on a fresh one first); while reading the body,
:class:`~serving.routing.errors.UpstreamBroken`. ``read_timeout`` bounds the silence
between two arrivals, as the aiohttp pool's ``sock_read`` does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Mapping

import httptools

from serving.routing.errors import UpstreamBroken, UpstreamUnreachable

_PAUSE_AT = 1 << 20  # bytes buffered before the connection stops reading


class Http1Response:
    """A response whose status and headers have arrived; read or relay its body, then release."""

    __slots__ = ("status", "headers", "_conn", "_chunks", "_buffered", "_waiter", "_done", "_error")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future | None = None
        self._done = False
        self._error: BaseException | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/json")

    async def read(self) -> bytes:
        parts = [chunk async for chunk in self.chunks()]
        return b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, without buffering beyond what the socket delivered."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < _PAUSE_AT:
                    self._conn.resume()
                yield chunk
                continue
            if self._error is not None:
                raise UpstreamBroken(f"{type(self._error).__name__}: {self._error}") from self._error
            if self._done:
                return
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def release(self) -> None:
        """Give the connection back to the pool if the body was read whole, else close it."""
        self._conn.finished(self, reusable=self._done and self._error is None and not self._chunks)

    # -- fed by the connection ------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= _PAUSE_AT:
            self._conn.pause()
        self._wake()

    def _finish(self, error: BaseException | None = None) -> None:
        if self._done or self._error is not None:
            return
        if error is None:
            self._done = True
        else:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._waiter = None


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one exchange at a time."""

    def __init__(self, pool: Http1Pool, key: tuple[str, int]) -> None:
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Http1Response | None = None
        self.head: asyncio.Future | None = None
        self.open = True
        self.used = False  # served an exchange before (a stale keep-alive may fail at once)
        self.got_bytes = False
        self.keep_alive = False
        self.last_arrival = 0.0
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.last_arrival = self.pool.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.pool.forget(self)
        response = self.response
        if (exc is None and response is not None and self.head is not None and self.head.done()
                and "content-length" not in response.headers
                and "chunked" not in response.headers.get("transfer-encoding", "")):
            self._stop_timer()
            response._finish()  # a body delimited by the end of the connection
            return
        self._fail(exc or ConnectionResetError("the replica closed the connection"))

    # -- httptools callbacks --------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self.response is not None and self.head is not None and not self.head.done():
            self.response.status = self.parser.get_status_code()
            self.head.set_result(self.response)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self._stop_timer()
        if self.response is not None:
            self.response._finish()

    # -- the exchange ------------------------------------------------------------------

    def send(self, payload: bytes) -> asyncio.Future:
        """Write one request; the future resolves to the response once its head arrived."""
        assert self.transport is not None and self.response is None
        self.response = Http1Response(self)
        self.head = self.pool.loop.create_future()
        self.got_bytes = False
        self.last_arrival = self.pool.loop.time()
        self.transport.write(payload)  # one write: one segment, one wake-up of the replica
        self._timer = self.pool.loop.call_later(self.pool.read_timeout, self._check_silence)
        return self.head

    def finished(self, response: Http1Response, *, reusable: bool) -> None:
        if response is not self.response:
            return
        self.response, self.head = None, None
        self._stop_timer()
        self.resume()
        if reusable and self.keep_alive and self.open:
            self.used = True
            self.parser = httptools.HttpResponseParser(self)
            self.pool.put_back(self)
        else:
            self.close()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and self.open:
            self._paused = False
            self.transport.resume_reading()

    def _fail(self, exc: BaseException) -> None:
        self._stop_timer()
        if self.head is not None and not self.head.done():
            self.head.set_exception(exc)
        elif self.response is not None:
            self.response._finish(exc)
        self.close()

    def _check_silence(self) -> None:
        self._timer = None
        idle = self.pool.loop.time() - self.last_arrival
        if idle >= self.pool.read_timeout:
            self._fail(asyncio.TimeoutError(f"no data from the replica for {idle:.0f} s"))
        else:
            self._timer = self.pool.loop.call_later(self.pool.read_timeout - idle, self._check_silence)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Http1Pool:
    """Idle keep-alive connections per ``(host, port)``; one per gateway event loop."""

    def __init__(self, *, connect_timeout: float = 5.0, read_timeout: float = 600.0,
                 max_idle_per_host: int = 256) -> None:
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.max_idle_per_host = max_idle_per_host
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()

    def close(self) -> None:
        for connections in self._idle.values():
            for conn in connections:
                conn.close()
        self._idle.clear()

    async def request(self, method: str, host: str, port: int, target: str, body: bytes,
                      headers: Mapping[str, str]) -> Http1Response:
        """Send one request and return once the response's head arrived (see the module
        docstring for the errors)."""
        key = (host, port)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        payload = (f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: "
                   f"{len(body)}\r\n{lines}\r\n").encode("latin-1") + body
        for _ in range(2):
            conn = self._take(key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(key)
            try:
                return await conn.send(payload)
            except (OSError, asyncio.TimeoutError, httptools.HttpParserError) as exc:
                conn.close()
                if reused and not conn.got_bytes and isinstance(exc, OSError):
                    continue  # the server had closed this idle connection: once more, afresh
                raise UpstreamUnreachable(f"{type(exc).__name__}: {exc}") from exc
        raise UpstreamUnreachable("the replica closed two connections in a row")

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self, key), *key),
                self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise UpstreamUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return conn

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.open:
                return conn
        return None

    def put_back(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) < self.max_idle_per_host:
            idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
