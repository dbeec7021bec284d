"""The connection pool to the replicas, and what the gateway needs of an upstream response.

Requests to plain ``http://`` replicas go through the lean keep-alive client of
:mod:`serving.routing.http1` (the proxy path: measured on this project's gateway
benchmark, a general-purpose client cost more CPU per request than the rest of
the proxying); anything else (``https://``, and the ``/metrics`` reads) through
aiohttp, whose pool, unlike httpx's, does not re-check every pooled connection on
each request. Bodies pass through as bytes, unchanged.

Errors before the response headers arrive are :class:`UpstreamUnreachable`
(the caller may retry on another replica); errors while reading the body are
:class:`UpstreamBroken` (too late to retry: bytes may have reached the client).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import aiohttp

from serving.routing.errors import UpstreamBroken, UpstreamUnreachable
from serving.routing.http1 import Http1Pool, Http1Response

__all__ = ["UpstreamBroken", "UpstreamPool", "UpstreamResponse", "UpstreamUnreachable"]


class UpstreamResponse:
    """An upstream response whose headers have arrived; read it or relay it, then release it."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def content_type(self) -> str:
        return self._response.headers.get("Content-Type", "application/json")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise UpstreamBroken(f"{type(exc).__name__}: {exc}") from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk, without buffering."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise UpstreamBroken(f"{type(exc).__name__}: {exc}") from exc

    def release(self) -> None:
        self._response.release()


class UpstreamPool:
    """Keep-alive connections to every replica; one per gateway, opened in its event loop."""

    def __init__(self, *, read_timeout: float = 600.0, connect_timeout: float = 5.0) -> None:
        self.read_timeout, self.connect_timeout = read_timeout, connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._plain = Http1Pool(connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._targets: dict[str, tuple[str, int, str] | None] = {}

    async def start(self) -> None:
        self._plain.start()
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=256, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                        sock_read=self.read_timeout)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                              auto_decompress=False)

    async def close(self) -> None:
        self._plain.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, body: bytes) -> UpstreamResponse | Http1Response:
        """POST a JSON body; returns once the response headers are in."""
        target = self._target(url)
        if target is not None:
            return await self._plain.request("POST", target[0], target[1], target[2], body, _JSON)
        if self._session is None:
            raise RuntimeError("upstream pool not started: call start() in the event loop first")
        try:
            response = await self._session.post(url, data=body, headers={
                "Content-Type": "application/json", "Accept-Encoding": "identity"})
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise UpstreamUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return UpstreamResponse(response)

    async def get(self, url: str, timeout: float) -> tuple[int, bytes]:
        """GET a small resource (a replica's ``/metrics``): ``(status, body)`` within ``timeout`` s."""
        if self._session is None:
            raise RuntimeError("upstream pool not started: call start() in the event loop first")
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise UpstreamUnreachable(f"{type(exc).__name__}: {exc}") from exc

    def _target(self, url: str) -> tuple[str, int, str] | None:
        """``(host, port, path)`` of a plain ``http://host:port/path`` URL, else None (cached).

        >>> UpstreamPool()._target("http://127.0.0.1:8101/v1/chat/completions")
        ('127.0.0.1', 8101, '/v1/chat/completions')
        """
        if url in self._targets:
            return self._targets[url]
        parts = urlsplit(url)
        target = None
        if parts.scheme == "http" and parts.hostname and not parts.query:
            target = (parts.hostname, parts.port or 80, parts.path or "/")
        if len(self._targets) > 4096:
            self._targets.clear()
        self._targets[url] = target
        return target


_JSON = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
