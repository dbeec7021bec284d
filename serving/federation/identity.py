"""A site's identity on the peer link: its site CA and its site certificate, loaded and checked.

Each site runs its own certificate authority and trusts exactly one other: the
peer's. The demo creates everything on first start
(:func:`~serving.federation.site_ca.ensure_site_identity`); a real
installation gives its own files to :meth:`SiteIdentity.from_files`. Files of
an identity directory, each written once with mode 0600 (the directory 0700)
and reused::

    site-ca.pem       the site CA certificate: hand it to the peer, it is the peer's only trust anchor
    site-ca-key.pem   the CA's private key (needed only to issue a new site certificate)
    site.pem          the site certificate, issued by the CA
    site-key.pem      its private key

Keys are ECDSA P-256 (OpenSSL, and so ``ssl``, uvicorn and aiohttp, accept
them for TLS on both sides; Ed25519 certificates work only in TLS 1.3). The
site certificate names ``localhost`` and ``127.0.0.1`` (plus any host names
and addresses given) and the URI ``corridor://site/<site>``, which says which
site it speaks for; it allows both server and client authentication. The
mutual-TLS contexts built on it are in :mod:`~serving.federation.tls`.

Errors: :class:`IdentityError`, an identity or a peer trust setting that
cannot be used, raised at construction; the message shows the fix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SITES = ("FR", "DE")
CA_CERT_FILE = "site-ca.pem"
CA_KEY_FILE = "site-ca-key.pem"
CERT_FILE = "site.pem"
KEY_FILE = "site-key.pem"


class IdentityError(Exception):
    """A site identity or peer trust setting that cannot be used; the message shows the fix."""


def site_uri(site: str) -> str:
    """The SAN URI naming the site a certificate speaks for.

    >>> site_uri("FR")
    'corridor://site/FR'
    """
    check_site(site)
    return f"corridor://site/{site}"


def check_site(site: str) -> None:
    """Raise :class:`IdentityError` unless ``site`` is one of :data:`SITES`."""
    if site not in SITES:
        raise IdentityError(f"site: got {site!r}, want one of {', '.join(SITES)} (e.g. site='FR')")


def load_certificate(data: bytes | x509.Certificate, what: str) -> x509.Certificate:
    """The certificate of its PEM or DER bytes; :class:`IdentityError` naming ``what`` otherwise."""
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
    cert = load_certificate(certificate, "certificate")
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def certificate_site(certificate: bytes | x509.Certificate) -> str | None:
    """The site a certificate speaks for (its ``corridor://site/<site>`` SAN URI), or ``None``."""
    cert = load_certificate(certificate, "certificate")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    sites = [uri.removeprefix("corridor://site/") for uri in names.get_values_for_type(x509.UniformResourceIdentifier)
             if uri.startswith("corridor://site/")]
    return sites[0] if len(sites) == 1 else None


@dataclass(frozen=True)
class SiteIdentity:
    """A site's certificate, its key and its CA's certificate, checked to belong together.

    Build with :func:`~serving.federation.site_ca.ensure_site_identity` (the demo) or :meth:`from_files`.
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
        check_site(site)
        identity = cls(site, Path(cert), Path(key), Path(ca_cert))
        certificate = load_certificate(read_file(identity.cert, "site certificate"), f"site certificate {identity.cert}")
        authority = load_certificate(read_file(identity.ca_cert, "site CA"), f"site CA {identity.ca_cert}")
        private_key = load_private_key(identity.key)
        check_ca(authority, identity.ca_cert)
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


def read_file(path: Path, what: str) -> bytes:
    """The bytes of ``path``; :class:`IdentityError` naming ``what`` when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The unencrypted PEM ECDSA private key at ``path``; :class:`IdentityError` otherwise."""
    try:
        key = serialization.load_pem_private_key(read_file(path, "site key"), password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise IdentityError(f"{path}: got a {type(key).__name__}, want an ECDSA private key")
    return key


def check_ca(certificate: x509.Certificate, where: object) -> None:
    """Raise :class:`IdentityError` unless ``certificate`` is a CA (basicConstraints CA:TRUE)."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise IdentityError(f"{where}: not a CA certificate (basicConstraints CA:TRUE missing); give the site CA")


def load_site_ca(ca_cert: Path, ca_key: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The site CA's key and certificate, checked to be a CA and to belong together."""
    ca = load_certificate(read_file(ca_cert, "site CA"), str(ca_cert))
    check_ca(ca, ca_cert)
    key = load_private_key(ca_key)
    if key.public_key().public_numbers() != ca.public_key().public_numbers():
        raise IdentityError(f"{ca_key} does not match {ca_cert}")
    return key, ca


def peer_ca_pem(peer_ca: Path | str | bytes) -> str:
    """The peer's CA certificate (a path, or PEM or DER bytes) as PEM text, checked to be a CA."""
    data = peer_ca if isinstance(peer_ca, bytes) else read_file(Path(peer_ca), "peer CA")
    certificate = load_certificate(data, "peer_ca")
    check_ca(certificate, "peer_ca")
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
