"""Where a site keeps its state: files and SQLite in ``$CORRIDOR_HOME`` (the embedded default,
one gateway process), or the site's PostgreSQL database (``database:``), shared by its control
process and every gateway worker. One function per store, used by both kinds of process, so
they always open the same thing.

Each function calls the store's own factory (``open_ledger``, ``open_key_store``,
``open_batch_store``, ``open_crisis_store``, ``open_bundle_archive``, ``open_shared_buckets``,
``open_shared_failure_counter``);
without a database it builds exactly what a one-process site built before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policies import Policy
from policies.archive import ARCHIVE_DIRNAME, BundleArchive
from scheduler.crisis import STORE_FILENAME, CrisisRegistry
from scheduler.crisis.peering import SiteSigner
from scheduler.database import ensure_schema
from scheduler.ledger import Ledger
from serving.gateway.auth import KeyStore

KEYS_FILENAME = "api-keys.json"


def open_site_ledger(home: Path, database: str | None, key: Path | None = None) -> Ledger:
    """The site's ledger: SQLite in ``home``, or its PostgreSQL log; signed with ``key``
    (default ``home/ledger-signing-key.pem``, created when missing)."""
    if database is None:
        return Ledger.open(home, signing_key_path=key)
    from scheduler.ledger import open_ledger

    ensure_schema(database)  # the first store a site opens: its schema must exist
    return open_ledger(home, database=database, signing_key_path=key)


def open_keys(home: Path, site: str | None, database: str | None) -> KeyStore:
    """The site's API keys: ``home/api-keys.json``, or the database's key table."""
    if database is None:
        return KeyStore(home / KEYS_FILENAME, site=site)
    return KeyStore(home / KEYS_FILENAME, site=site, database=database)


def open_crisis(policy: Policy, ledger: Ledger, home: Path, database: str | None, *,
                signer: SiteSigner | None) -> CrisisRegistry:
    """The crisis registry over ``home/crisis.json``, or over the database's declarations."""
    if database is None:
        return CrisisRegistry(policy, ledger, home / STORE_FILENAME, signer=signer)
    from scheduler.crisis.store import open_crisis_store

    return CrisisRegistry(policy, ledger, None, signer=signer,
                          store=open_crisis_store(home, database=database))


def open_batches(home: Path, database: str | None, *, worker: bool = False, **options: Any):
    """The Batch API's service over ``home/batches.db``, or over the database's batch store:
    a gateway ``worker`` stores and cancels, the control process's executor runs them all."""
    from serving.batch import BatchService

    if database is None:
        return BatchService.open(home, **options)
    from serving.batch.store import open_batch_store

    return BatchService(open_batch_store(home, database=database), execute=not worker,
                        shared=not worker, **options)


def open_bundles(home: Path, database: str | None):
    """Policy bundles kept by digest (for replay and for workers following ``policy apply``)."""
    if database is None:
        return BundleArchive(home / ARCHIVE_DIRNAME)
    from scheduler.bundle_store import open_bundle_archive

    return open_bundle_archive(home, database=database)


def limiter_options(database: str | None) -> dict[str, Any]:
    """The options of the request limiter and the token quota of a site
    (:class:`~serving.gateway.limits.RateLimiter`, :class:`~serving.gateway.token_quota.TokenQuota`):
    with a database, one set of buckets shared by the site's gateway processes; without, each
    keeps its own in memory."""
    if database is None:
        return {}
    from serving.gateway.shared_limits import open_shared_buckets

    return {"buckets": open_shared_buckets(database)}


def auth_throttle_options(database: str | None) -> dict[str, Any]:
    """The options of the failed-login throttle of a site's
    :class:`~serving.gateway.limits.RateLimiter`: with a database, the failures counted across the
    site's gateway processes; without, each counts its own in memory."""
    if database is None:
        return {}
    from serving.gateway.shared_auth_failures import open_shared_failure_counter

    return {"failure_counter": open_shared_failure_counter(database)}
