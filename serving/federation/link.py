"""The link to the peer site: one mutual-TLS connection pool to its peer API.

This site presents its own site certificate and trusts only the peer site's CA
(:func:`serving.federation.tls.client_context`), so whatever answers is the
peer and nobody else. Errors before an answer are :class:`PeerUnavailable`
(callers answer 503 ``peer_unavailable`` and never serve elsewhere); an answer
with an error status is :class:`PeerRefused`, carrying the peer's error body.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp

from serving.routing import UpstreamResponse


class PeerUnavailable(Exception):
    """The peer site did not answer (down, unreachable, or the TLS handshake failed)."""


class PeerRefused(Exception):
    """The peer answered with an error: ``status`` and its OpenAI-style ``body``."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
        super().__init__(f"the peer site answered {status}: {message or body}")
        self.status, self.body = status, body


class PeerLink:
    """Calls to the peer API at ``base_url`` over mutual TLS; open it in the event loop."""

    def __init__(self, base_url: str, context: ssl.SSLContext, *, connect_timeout: float = 3.0,
                 read_timeout: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.context = context
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.context, limit=256)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                        sock_read=self.read_timeout)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                              auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("peer link not started: call start() in the event loop first")
        return self._session

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None,
                       timeout: float = 10.0) -> Any:
        """GET a JSON document from the peer API."""
        return await self._json("GET", path, params=params, timeout=timeout)

    async def post_json(self, path: str, payload: Any, timeout: float = 10.0) -> Any:
        """POST a JSON document to the peer API; returns its JSON answer."""
        return await self._json("POST", path, json=payload, timeout=timeout)

    async def forward(self, path: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        """POST a forwarded request; returns once the peer's response headers are in (any status)."""
        try:
            response = await self._open().post(self.base_url + path, data=body, headers={
                "Content-Type": "application/json", "Accept-Encoding": "identity", **headers})
        except (aiohttp.ClientError, asyncio.TimeoutError, ssl.SSLError, OSError) as exc:
            raise PeerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return UpstreamResponse(response)

    async def _json(self, method: str, path: str, timeout: float, **options: Any) -> Any:
        try:
            async with self._open().request(method, self.base_url + path,
                                            timeout=aiohttp.ClientTimeout(total=timeout),
                                            **options) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ssl.SSLError, OSError, ValueError) as exc:
            raise PeerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status >= 400:
            raise PeerRefused(response.status, body)
        return body
