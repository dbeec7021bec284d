"""Site identity for the peer link: a site CA, a site certificate, and mutual-TLS contexts.

Each site runs its own certificate authority and trusts exactly one other: the
peer's. The demo creates everything on first start; a real installation gives
its own files to :meth:`SiteIdentity.from_files`. Files of an identity
directory, each written once with mode 0600 (the directory 0700) and reused::

    site-ca.pem       the site CA certificate: hand it to the peer, it is the peer's only trust anchor
    site-ca-key.pem   the CA's private key (needed only to issue a new site certificate)
    site.pem          the site certificate, issued by the CA
    site-key.pem      its private key

Keys are ECDSA P-256 (OpenSSL, and so ``ssl``, uvicorn and aiohttp, accept
them for TLS on both sides; Ed25519 certificates work only in TLS 1.3). The
site certificate names ``localhost`` and ``127.0.0.1`` (plus any host names
and addresses given) and the URI ``corridor://site/<site>``, which says which
site it speaks for; it allows both server and client authentication.

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

    IdentityError          an identity or a peer trust setting that cannot be used; raised at
                           construction, the message shows the fix
    PeerCertificateError   (an ssl.SSLCertVerificationError) raised in the handshake: the peer's
                           certificate is not the pinned one or speaks for another site
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import re
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SITES = ("FR", "DE")
CA_CERT_FILE = "site-ca.pem"
CA_KEY_FILE = "site-ca-key.pem"
CERT_FILE = "site.pem"
KEY_FILE = "site-key.pem"
CA_VALID_DAYS = 3650
CERT_VALID_DAYS = 397
_CLOCK_SKEW = dt.timedelta(minutes=5)
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


class IdentityError(Exception):
    """A site identity or peer trust setting that cannot be used; the message shows the fix."""


class PeerCertificateError(ssl.SSLCertVerificationError):
    """The peer's certificate chains to the peer CA but is not the pinned one, or speaks for another site."""


def site_uri(site: str) -> str:
    """The SAN URI naming the site a certificate speaks for.

    >>> site_uri("FR")
    'corridor://site/FR'
    """
    _check_site(site)
    return f"corridor://site/{site}"


def _check_site(site: str) -> None:
    if site not in SITES:
        raise IdentityError(f"site: got {site!r}, want one of {', '.join(SITES)} (e.g. site='FR')")


def _load_certificate(data: bytes | x509.Certificate, what: str) -> x509.Certificate:
    if isinstance(data, x509.Certificate):
        return data
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise IdentityError(f"{what}: not a PEM or DER X.509 certificate ({exc})") from exc


def certificate_fingerprint(certificate: bytes | x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate's DER bytes (PEM or DER given), the form pins use."""
    cert = _load_certificate(certificate, "certificate")
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def certificate_site(certificate: bytes | x509.Certificate) -> str | None:
    """The site a certificate speaks for (its ``corridor://site/<site>`` SAN URI), or ``None``."""
    cert = _load_certificate(certificate, "certificate")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    sites = [uri.removeprefix("corridor://site/") for uri in names.get_values_for_type(x509.UniformResourceIdentifier)
             if uri.startswith("corridor://site/")]
    return sites[0] if len(sites) == 1 else None


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
class SiteIdentity:
    """A site's certificate, its key and its CA's certificate, checked to belong together.

    Build with :func:`ensure_site_identity` (the demo) or :meth:`from_files`.
    """

    site: str
    cert: Path
    key: Path
    ca_cert: Path

    @classmethod
    def from_files(cls, site: str, *, cert: Path | str, key: Path | str, ca_cert: Path | str) -> SiteIdentity:
        """Check and return the identity of ``site`` from configured files (real installations).

        The certificate must be issued by ``ca_cert``, match ``key``, be valid
        now, and carry the SAN URI ``corridor://site/<site>``.
        """
        _check_site(site)
        identity = cls(site, Path(cert), Path(key), Path(ca_cert))
        certificate = _load_certificate(_read(identity.cert, "site certificate"), f"site certificate {identity.cert}")
        authority = _load_certificate(_read(identity.ca_cert, "site CA"), f"site CA {identity.ca_cert}")
        private_key = _load_key(identity.key)
        _check_ca(authority, identity.ca_cert)
        try:
            certificate.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise IdentityError(
                f"site certificate {identity.cert} is not issued by the CA {identity.ca_cert}; "
                f"give the CA that signed it, or issue a new certificate"
            ) from exc
        if certificate.public_key().public_numbers() != private_key.public_key().public_numbers():
            raise IdentityError(f"site key {identity.key} does not match the certificate {identity.cert}")
        now = dt.datetime.now(dt.UTC)
        if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc:
            raise IdentityError(
                f"site certificate {identity.cert} is valid from {certificate.not_valid_before_utc:%Y-%m-%d} "
                f"to {certificate.not_valid_after_utc:%Y-%m-%d}, not now; issue a new one "
                f"(delete {CERT_FILE} and {KEY_FILE} beside the CA to have one issued)"
            )
        named = certificate_site(certificate)
        if named != site:
            raise IdentityError(
                f"site certificate {identity.cert}: speaks for site {named!r}, want {site!r} "
                f"(SAN URI {site_uri(site)})"
            )
        return identity

    @property
    def fingerprint(self) -> str:
        """SHA-256 of this site's certificate: what the peer may pin."""
        return certificate_fingerprint(self.cert.read_bytes())

    def ca_pem(self) -> bytes:
        """This site's CA certificate, PEM: what the peer configures as its ``peer_ca``."""
        return self.ca_cert.read_bytes()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path, "site key"), password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise IdentityError(f"{path}: got a {type(key).__name__}, want an ECDSA private key")
    return key


def _check_ca(certificate: x509.Certificate, where: object) -> None:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise IdentityError(f"{where}: not a CA certificate (basicConstraints CA:TRUE missing); give the site CA")


def _name(site: str, role: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, site),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corridor"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Corridor {site} {role}"),
    ])


def _new_ca(site: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(site, "site CA"))
        .issuer_name(_name(site, "site CA"))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _new_site_certificate(
    site: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, now: dt.datetime,
    hostnames: Sequence[str], addresses: Sequence[str],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        ips = [x509.IPAddress(address) for address in dict.fromkeys(ipaddress.ip_address(a) for a in addresses)]
    except ValueError as exc:
        raise IdentityError(f"addresses: {exc}; want IP addresses such as '127.0.0.1'") from exc
    names = [x509.DNSName(h) for h in dict.fromkeys(hostnames)] + ips
    names.append(x509.UniformResourceIdentifier(site_uri(site)))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(site, "site"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + dt.timedelta(days=CERT_VALID_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _write_new(directory: Path, files: dict[str, bytes]) -> None:
    """Write each file with mode 0600 and put it in place without replacing anything that exists."""
    placed = []
    try:
        for name, data in files.items():
            temporary = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(temporary, directory / name)  # never replaces an existing file
                placed.append(directory / name)
            finally:
                temporary.unlink(missing_ok=True)
    except FileExistsError:
        for path in placed:  # another process won the race: keep its files, not half of ours
            path.unlink(missing_ok=True)
        raise
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def ensure_site_identity(
    directory: Path | str,
    site: str,
    *,
    hostnames: Sequence[str] = ("localhost",),
    addresses: Sequence[str] = ("127.0.0.1",),
) -> SiteIdentity:
    """The identity of ``site`` in ``directory``: reused when present, created (CA, then certificate) when not.

    With the CA present but no site certificate, a new certificate is issued
    from that CA (rotation: delete ``site.pem`` and ``site-key.pem``).
    ``localhost`` and ``127.0.0.1`` are always named; ``hostnames`` and
    ``addresses`` add to them. Who calls: ``corridor up`` for each site.
    """
    _check_site(site)
    hostnames = ["localhost", *hostnames]
    addresses = ["127.0.0.1", *addresses]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = {name: directory / name for name in (CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE)}
    present = {name for name, path in paths.items() if path.exists()}
    now = dt.datetime.now(dt.UTC)
    if not present:
        ca_key, ca = _new_ca(site, now)
        key, certificate = _new_site_certificate(site, ca_key, ca, now, hostnames, addresses)
        try:
            _write_new(directory, {CA_KEY_FILE: _pem_key(ca_key), CA_CERT_FILE: _pem_cert(ca),
                                   KEY_FILE: _pem_key(key), CERT_FILE: _pem_cert(certificate)})
        except FileExistsError:
            pass  # another process created it at the same moment; use its files
    elif present == {CA_CERT_FILE, CA_KEY_FILE}:
        ca = _load_certificate(_read(paths[CA_CERT_FILE], "site CA"), str(paths[CA_CERT_FILE]))
        _check_ca(ca, paths[CA_CERT_FILE])
        ca_key = _load_key(paths[CA_KEY_FILE])
        if ca_key.public_key().public_numbers() != ca.public_key().public_numbers():
            raise IdentityError(f"{paths[CA_KEY_FILE]} does not match {paths[CA_CERT_FILE]}")
        key, certificate = _new_site_certificate(site, ca_key, ca, now, hostnames, addresses)
        try:
            _write_new(directory, {KEY_FILE: _pem_key(key), CERT_FILE: _pem_cert(certificate)})
        except FileExistsError:
            pass
    elif {CA_CERT_FILE, CERT_FILE, KEY_FILE} - present:
        missing = sorted({CA_CERT_FILE, CERT_FILE, KEY_FILE} - present)
        raise IdentityError(
            f"identity directory {directory} is incomplete: {', '.join(missing)} missing; restore them, "
            f"or move the directory away to create a new identity (the peer must then trust the new CA)"
        )
    return SiteIdentity.from_files(site, cert=paths[CERT_FILE], key=paths[KEY_FILE], ca_cert=paths[CA_CERT_FILE])


# --- TLS contexts -------------------------------------------------------------------------------


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


def _peer_ca_pem(peer_ca: Path | str | bytes) -> str:
    data = peer_ca if isinstance(peer_ca, bytes) else _read(Path(peer_ca), "peer CA")
    certificate = _load_certificate(data, "peer_ca")
    _check_ca(certificate, "peer_ca")
    return _pem_cert(certificate).decode("ascii")


def _context(
    protocol: int, identity: SiteIdentity, peer_ca: Path | str | bytes, peer_site: str | None,
    peer_fingerprint: str | None,
) -> ssl.SSLContext:
    if peer_site is not None:
        _check_site(peer_site)
        if peer_site == identity.site:
            raise IdentityError(f"peer_site: got {peer_site}, want the other site than this one ({identity.site})")
    pin = normalize_fingerprint(peer_fingerprint) if peer_fingerprint is not None else None
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_cert_chain(identity.cert, identity.key)
    context.load_verify_locations(cadata=_peer_ca_pem(peer_ca))  # the peer's CA, and nothing else
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
