"""Mutual-TLS contexts of the peer link, and the checks of the peer's certificate in the handshake.

:func:`server_context` requires a client certificate chaining to the
configured peer CA, and nothing else (no system trust store);
:func:`client_context` presents this site's certificate and trusts only the
peer's CA, checking the host name. Both can also require the peer's
certificate to name the peer's site and to have a pinned SHA-256
fingerprint; those two checks run inside the handshake (for blocking sockets
and for asyncio, uvloop, uvicorn and aiohttp alike), which then fails with
:class:`PeerCertificateError`. With uvicorn: ``uvicorn.Config(app,
ssl_context_factory=lambda config, default: server_context(...))``.

Errors::

    IdentityError          (serving.federation.identity) a peer trust setting that cannot be
                           used; raised at construction, the message shows the fix
    PeerCertificateError   (an ssl.SSLCertVerificationError) raised in the handshake: the peer's
                           certificate is not the pinned one or speaks for another site
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from serving.federation.identity import (
    IdentityError,
    SiteIdentity,
    certificate_site,
    check_site,
    peer_ca_pem,
    site_uri,
)

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


class PeerCertificateError(ssl.SSLCertVerificationError):
    """The peer's certificate chains to the peer CA but is not the pinned one, or speaks for another site."""


def normalize_fingerprint(fingerprint: str) -> str:
    """``AB:CD:…`` or ``abcd…`` to 64 lowercase hex digits; :class:`IdentityError` otherwise.

    >>> normalize_fingerprint("AB:" * 31 + "AB")[:6]
    'ababab'
    """
    value = fingerprint.replace(":", "").strip().lower()
    if not _FINGERPRINT.fullmatch(value):
        raise IdentityError(
            f"peer_fingerprint: got {fingerprint!r}, want the SHA-256 of the peer certificate's DER bytes, "
            f"64 hex digits (openssl x509 -in site.pem -noout -fingerprint -sha256)"
        )
    return value


@dataclass(frozen=True)
class _PeerCheck:
    site: str | None
    fingerprint: str | None

    def __call__(self, der: bytes | None) -> None:
        if der is None:
            raise PeerCertificateError("peer sent no certificate")
        if self.fingerprint is not None:
            got = hashlib.sha256(der).hexdigest()
            if got != self.fingerprint:
                raise PeerCertificateError(f"peer certificate: fingerprint got {got}, want the pinned {self.fingerprint}")
        if self.site is not None:
            named = certificate_site(der)
            if named != self.site:
                raise PeerCertificateError(
                    f"peer certificate: speaks for site {named!r}, want {self.site!r} ({site_uri(self.site)})"
                )


class _CheckedSSLObject(ssl.SSLObject):
    """An SSLObject (asyncio, uvloop) that runs its context's peer check once the handshake is done."""

    def do_handshake(self) -> None:
        super().do_handshake()
        _run_check(self)


class _CheckedSSLSocket(ssl.SSLSocket):
    """An SSLSocket (blocking sockets) that runs its context's peer check once the handshake is done."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        _run_check(self)


def _run_check(connection: ssl.SSLObject | ssl.SSLSocket) -> None:
    check = getattr(connection.context, "_corridor_peer_check", None)
    if check is not None:
        check(connection.getpeercert(binary_form=True))


def _context(
    protocol: int, identity: SiteIdentity, peer_ca: Path | str | bytes, peer_site: str | None,
    peer_fingerprint: str | None,
) -> ssl.SSLContext:
    if peer_site is not None:
        check_site(peer_site)
        if peer_site == identity.site:
            raise IdentityError(f"peer_site: got {peer_site}, want the other site than this one ({identity.site})")
    pin = normalize_fingerprint(peer_fingerprint) if peer_fingerprint is not None else None
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_cert_chain(identity.cert, identity.key)
    context.load_verify_locations(cadata=peer_ca_pem(peer_ca))  # the peer's CA, and nothing else
    if pin is not None or peer_site is not None:
        context._corridor_peer_check = _PeerCheck(peer_site, pin)  # type: ignore[attr-defined]
        context.sslobject_class = _CheckedSSLObject
        context.sslsocket_class = _CheckedSSLSocket
    return context


def server_context(
    identity: SiteIdentity,
    *,
    peer_ca: Path | str | bytes,
    peer_site: str | None = None,
    peer_fingerprint: str | None = None,
) -> ssl.SSLContext:
    """TLS context of this site's peer API: presents ``identity``, requires a client certificate of the peer CA.

    ``peer_ca`` is the peer's CA certificate (path or PEM). ``peer_site``
    requires the client certificate to speak for that site;
    ``peer_fingerprint`` pins the exact client certificate.
    """
    return _context(ssl.PROTOCOL_TLS_SERVER, identity, peer_ca, peer_site, peer_fingerprint)


def client_context(
    identity: SiteIdentity,
    *,
    peer_ca: Path | str | bytes,
    peer_site: str | None = None,
    peer_fingerprint: str | None = None,
) -> ssl.SSLContext:
    """TLS context for calling the peer: presents ``identity``, trusts only the peer CA, checks the host name.

    ``peer_site`` and ``peer_fingerprint`` as for :func:`server_context`.
    """
    context = _context(ssl.PROTOCOL_TLS_CLIENT, identity, peer_ca, peer_site, peer_fingerprint)
    context.check_hostname = True
    return context


def peer_site(connection: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """The site the other end's certificate speaks for, after the handshake (``None`` without one)."""
    der = connection.getpeercert(binary_form=True)
    return certificate_site(der) if der else None
