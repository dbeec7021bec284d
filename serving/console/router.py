"""``/console``: the page and its static assets, read once from package data.

Every console response carries a strict Content-Security-Policy: scripts,
styles, images and API calls only from the gateway's own origin, no inline
script or style, no plugins, no framing, and Trusted Types required so no
script can write HTML from strings. Nothing is loaded from anywhere else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving.console.api import console_api_router

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "font-src 'none'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
])
"""The policy of every ``/console`` response."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=(), payment=()",
    "Cache-Control": "no-cache",
}

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, media type and strong ETag."""

    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of ``serving/console/static`` whose suffix is in :data:`MEDIA_TYPES`, by name."""
    assets = {}
    for item in resources.files("serving.console").joinpath("static").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in MEDIA_TYPES:
            body = item.read_bytes()
            assets[item.name] = Asset(body, MEDIA_TYPES[suffix],
                                      '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    if "index.html" not in assets:
        raise RuntimeError("serving/console/static/index.html is missing from the package: "
                           "add 'static/*' to [tool.setuptools.package-data] for serving.console")
    return assets


def _serve(request: Request, asset: Asset) -> Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def console_router() -> APIRouter:
    """The console: ``GET /console`` (the page), ``GET /console/static/{name}`` and the
    console's read-only APIs (:func:`serving.console.api.console_api_router`).

    Mount with ``app.include_router(console_router())``; the page needs no
    credentials (it holds none), every API it calls does.
    """
    assets = load_assets()
    router = APIRouter(include_in_schema=False)

    @router.get("/console")
    @router.get("/console/")
    async def page(request: Request) -> Response:
        return _serve(request, assets["index.html"])

    @router.get("/console/static/{name}")
    async def static(request: Request, name: str) -> Response:
        asset = assets.get(name)
        if asset is None or name == "index.html":
            return Response(b'{"error": {"message": "no such console asset", "type": '
                            b'"invalid_request_error", "code": "not_found", "param": null}}',
                            status_code=404, media_type="application/json", headers=SECURITY_HEADERS)
        return _serve(request, asset)

    router.include_router(console_api_router())
    return router
