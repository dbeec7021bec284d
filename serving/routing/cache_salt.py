"""Prefix-cache isolation between tenants: the ``cache_salt`` every request to vLLM carries.

vLLM reuses the KV blocks of a prompt prefix it has seen; a tenant that could
hit another tenant's cached prefix would learn, from the speed-up, what that
tenant asked. vLLM mixes a request's ``cache_salt`` into its block hashes, so
requests share cached blocks only when their salts are equal. Corridor sets the
salt itself, per tenant, as an HMAC of the tenant id under a secret of the
installation (a value the client sent is replaced): a tenant's repeats still
hit its own cache, and no tenant can guess or borrow another's salt.

The gateway salts interactive requests, the batch executor batch lines; both
read the salt from one :class:`CacheSalts`, made by :func:`open_cache_salts`.
Every process of a site must salt alike, or a tenant's requests arriving
through different processes never share cached prefixes (isolation holds, the
hit rate falls, and prefix-affinity routing is defeated). So the secret is the
site's: with a database (several gateway processes, or pods with a home each),
one row of the database, created once and read by every process at start
(:mod:`serving.routing.pg_cache_salt`); without, ``$CORRIDOR_HOME/cache-salt.key``.

The secret never needs rotating: it only makes salts unguessable, and the
gateway replaces any salt a client sends, so a leaked secret lets no tenant
reach another's cache through the gateway. Replacing it (all processes of the
site stopped) costs one cold prefix cache, nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

SECRET_FILENAME = "cache-salt.key"


class CacheSalts:
    """Per-tenant salts under one secret; without a secret, a random one for this process."""

    def __init__(self, secret: bytes | None = None) -> None:
        if secret is not None and len(secret) < 16:
            raise ValueError(f"cache salt secret: got {len(secret)} bytes, want at least 16, "
                             f"e.g. CacheSalts(secrets.token_bytes(32))")
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._salts: dict[str, str] = {}

    @classmethod
    def open(cls, home: Path | str) -> CacheSalts:
        """The salts of the installation in ``home``: its secret file is created (0600) once,
        so every gateway process sharing ``home`` salts alike and restarts keep the cache useful.

        The file appears whole (written aside, then linked into place if still absent), so
        processes starting together never read a half-written secret and all keep the first."""
        path = Path(home) / SECRET_FILENAME
        if not path.exists():
            draft = path.with_name(f".{SECRET_FILENAME}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(secrets.token_bytes(32))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(draft, path)
            except FileExistsError:
                pass  # another process linked its secret first: that one is the installation's
            finally:
                draft.unlink()
        return cls(path.read_bytes())

    def salt(self, tenant: str) -> str:
        """The tenant's salt: 64 hex digits (vLLM takes up to 128 characters, no ``/`` or ``@``).

        >>> salts = CacheSalts(b"0" * 32)
        >>> salts.salt("fr-interior") == salts.salt("fr-interior") != salts.salt("de-health")
        True
        """
        salt = self._salts.get(tenant)
        if salt is None:
            salt = hmac.new(self._secret, b"corridor cache salt\x00" + tenant.encode("utf-8"),
                            hashlib.sha256).hexdigest()
            if len(self._salts) < 100_000:
                self._salts[tenant] = salt
        return salt

    def salted(self, payload: dict[str, Any], tenant: str) -> bytes:
        """``payload`` as the JSON body to send, with the tenant's salt (replacing any sent).

        >>> CacheSalts(b"0" * 32).salted({"model": "m", "cache_salt": "theirs"}, "t")[:40]
        b'{"model":"m","cache_salt":"8dfbdeb0e1844'
        """
        payload["cache_salt"] = self.salt(tenant)
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def open_cache_salts(home: Path | str, database: str | None = None, *,
                     timeout: float = 5.0) -> CacheSalts:
    """The site's salts, for every gateway process and the batch executor: under the secret in
    the site's ``database`` (PostgreSQL; created by the first process, read by all), else under
    ``home``'s secret file (:meth:`CacheSalts.open`).

    A database that does not answer within ``timeout`` raises
    :class:`~scheduler.database.DatabaseUnavailable`: a secret of this process's own would
    silently split the site's prefix cache, so the process does not start without the site's."""
    if database is None:
        return CacheSalts.open(home)
    from serving.routing.pg_cache_salt import site_secret

    return CacheSalts(site_secret(database, timeout=timeout))
