"""The connection pool to the replicas, and what the gateway needs of an upstream response.

Built on aiohttp: measured on this project's gateway benchmark, httpx's
connection pool (httpcore) spent most of the gateway's CPU re-checking every
pooled connection on each request, capping the gateway near 500 requests/s on
two cores; aiohttp's pool does not. Bodies pass through as bytes, unchanged.

Errors before the response headers arrive are :class:`UpstreamUnreachable`
(the caller may retry on another replica); errors while reading the body are
:class:`UpstreamBroken` (too late to retry: bytes may have reached the client).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp


class UpstreamUnreachable(Exception):
    """No response from the replica (connection refused, reset, or timed out before headers)."""


class UpstreamBroken(Exception):
    """The replica failed while its response body was being read."""


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

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=256, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                        sock_read=self.read_timeout)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                              auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, body: bytes) -> UpstreamResponse:
        """POST a JSON body; returns once the response headers are in."""
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
