"""Creating a site's identity: a new site CA, a site certificate issued by it, written once.

Who calls: ``corridor up`` for each site, through :func:`ensure_site_identity`,
which reuses the files of :mod:`~serving.federation.identity` when present.
The CA is valid 10 years; a site certificate 397 days (and never beyond its
CA), issued for server and client authentication.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from serving.federation.identity import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_FILE,
    KEY_FILE,
    IdentityError,
    SiteIdentity,
    check_site,
    load_site_ca,
    site_uri,
)

CA_VALID_DAYS = 3650
CERT_VALID_DAYS = 397
_CLOCK_SKEW = dt.timedelta(minutes=5)


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
    check_site(site)
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
        ca_key, ca = load_site_ca(paths[CA_CERT_FILE], paths[CA_KEY_FILE])
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
