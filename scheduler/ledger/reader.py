"""Reading the placement ledger: queries, proofs, exports and stored tree heads.

:class:`LedgerReader` never writes, so it is safe from any process while the
one writer (:class:`scheduler.ledger.Ledger`) appends. Proofs are composed
from O(log n) stored subtree hashes read in one query.

Wire shapes (plain dicts, JSON-ready)::

    item           {"index": int, "leaf_hash": hex, "entry": {...}}
    entries page   {"data": [item, ...], "has_more": bool}
    tree head      {"tree_size", "root_hash", "timestamp", "key_id", "signature"}
    public key     {"key_id", "public_key"}
    inclusion      {"leaf_index", "tree_size", "inclusion_path": [hex]}
    consistency    {"first", "second", "consistency_path": [hex]}

Export: :meth:`LedgerReader.export` yields items in index order, optionally
only one tenant's. A full export lets an auditor recompute the root of the
first ``tree_size`` leaves and compare it with a signed tree head. A filtered
export cannot, so ``export(tenant=..., tree_size=N)`` adds ``"tree_size": N``
and ``"inclusion_path"`` to every item: each line then proves on its own that
its entry is leaf ``index`` of the tree whose signed head has size ``N``
(:func:`scheduler.ledger.verify.verify_export` checks both forms).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scheduler.ledger.entry import format_timestamp, parse_leaf
from scheduler.ledger.exceptions import NotFoundError, ProofInputError, StorageError
from scheduler.ledger.merkle import (
    EMPTY_ROOT,
    consistency_path_ranges,
    inclusion_path_ranges,
    perfect_subtrees,
    range_hash,
)
from scheduler.ledger.signing import KEY_FILENAME, PublicKey, load_signing_key
from scheduler.ledger.store import LedgerStore, SqliteStore, StoredLeaf
from scheduler.ledger.verify import LogReport, verify_log

DB_FILENAME = "ledger.db"
"""File name of the ledger database inside ``$CORRIDOR_HOME``."""

MAX_PAGE = 1000
"""Largest ``limit`` accepted by :meth:`LedgerReader.entries`."""


def open_store(home: Path, *, database: str | None, writer: bool) -> LedgerStore:
    """``home/ledger.db`` (SQLite) when ``database`` is None, else the ledger in that PostgreSQL database."""
    if database is None:
        return SqliteStore(home / DB_FILENAME, writer=writer)
    from scheduler.ledger.pg_store import PgStore  # psycopg only for a site that has a database

    return PgStore(database, writer=writer)


def _item(row: StoredLeaf) -> dict[str, Any]:
    return {"index": row.index, "leaf_hash": row.leaf_hash.hex(), "entry": parse_leaf(row.leaf)}


def _when(name: str, value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{name}: got naive datetime {value.isoformat()}, want a timezone-aware one")
    return format_timestamp(value)


class LedgerReader:
    """Queries, proofs and stored tree heads of a ledger; never writes.

    Used by the CLI (``corridor audit``) on a ledger another process may be
    appending to, and as the read side of :class:`~scheduler.ledger.log.Ledger`.
    Every call reads the store afresh, so it sees what any writer committed.
    """

    def __init__(self, store: LedgerStore, public_key: Ed25519PublicKey | None = None) -> None:
        self._store = store
        self._public_key = public_key

    @classmethod
    def open(
        cls, home: Path | str, *, database: str | None = None, public_key: Ed25519PublicKey | None = None
    ) -> LedgerReader:
        """Open ``home/ledger.db`` (or the ledger in PostgreSQL ``database``) read-only; the public
        key defaults to the one of ``home``'s signing key."""
        home = Path(home)
        store = open_store(home, database=database, writer=False)
        if public_key is None and (home / KEY_FILENAME).exists():
            public_key = load_signing_key(home / KEY_FILENAME).public_key()
        return cls(store, public_key)

    @property
    def store(self) -> LedgerStore:
        """The storage underneath (for verification)."""
        return self._store

    @property
    def size(self) -> int:
        """Number of committed entries."""
        return self._store.size()

    def get(self, index: int) -> dict[str, Any]:
        """The item at ``index``; :class:`NotFoundError` if there is none."""
        row = self._store.leaf(index)
        if row is None:
            raise NotFoundError(f"no entry at index {index} (log size {self.size})")
        return _item(row)

    def entries(
        self,
        *,
        tenant: str | None = None,
        kind: str | None = None,
        jurisdiction: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int | None = None,
        limit: int = 100,
        decision_id: str | None = None,
    ) -> dict[str, Any]:
        """One page of items matching every given filter, by index: ``{"data", "has_more"}``.

        ``since`` is inclusive, ``until`` exclusive (timezone-aware); the next
        page starts ``after`` the last index of this one.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit: got {limit}, want 1 <= limit <= {MAX_PAGE}")
        rows = list(
            self._store.scan(
                after=-1 if after is None else after,
                limit=limit + 1,
                tenant=tenant,
                kind=kind,
                jurisdiction=jurisdiction,
                since=_when("since", since),
                until=_when("until", until),
                decision_id=decision_id,
            )
        )
        return {"data": [_item(row) for row in rows[:limit]], "has_more": len(rows) > limit}

    def export(self, *, tenant: str | None = None, tree_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every item (only ``tenant``'s if given), by index.

        With ``tree_size``, only indexes below it, each item carrying
        ``"tree_size"`` and its ``"inclusion_path"`` in the tree of that size.
        """
        if tree_size is not None:
            self._check_tree_size(tree_size)
        for row in self._store.scan(tenant=tenant, below=tree_size):
            item = _item(row)
            if tree_size is not None:
                item["tree_size"] = tree_size
                item["inclusion_path"] = self._inclusion_path(row.index, tree_size)
            yield item

    def root_hash(self, tree_size: int) -> str:
        """MTH of the first ``tree_size`` leaves, hex, from O(log n) stored subtrees."""
        self._check_tree_size(tree_size)
        if tree_size == 0:
            return EMPTY_ROOT.hex()
        return self._range_hashes([(0, tree_size)])[0].hex()

    def inclusion_proof(self, index: int, tree_size: int) -> dict[str, Any]:
        """PATH(index, D[tree_size]): ``{"leaf_index", "tree_size", "inclusion_path"}``."""
        self._check_tree_size(tree_size)
        return {"leaf_index": index, "tree_size": tree_size, "inclusion_path": self._inclusion_path(index, tree_size)}

    def consistency_proof(self, first: int, second: int) -> dict[str, Any]:
        """PROOF(first, D[second]): ``{"first", "second", "consistency_path"}``; needs ``0 < first <= second``."""
        self._check_tree_size(second)
        path = self._range_hashes(consistency_path_ranges(first, second))
        return {"first": first, "second": second, "consistency_path": [value.hex() for value in path]}

    def tree_heads(self) -> list[dict[str, Any]]:
        """Every tree head issued, oldest first."""
        return [head.model_dump() for head in self._store.tree_heads()]

    def latest_tree_head(self) -> dict[str, Any]:
        """The last tree head issued; :class:`NotFoundError` if none was."""
        head = self._store.latest_tree_head()
        if head is None:
            raise NotFoundError("no tree head has been issued yet")
        return head.model_dump()

    def public_key(self) -> dict[str, str]:
        """``{"key_id", "public_key"}`` of the key that signs this ledger's tree heads."""
        if self._public_key is None:
            raise NotFoundError("no public key known for this ledger")
        return PublicKey.of(self._public_key).model_dump()

    def verify(self) -> LogReport:
        """Full verification of the stored log (see :func:`scheduler.ledger.verify.verify_log`)."""
        if self._public_key is None:
            raise NotFoundError("cannot verify tree heads: no public key known for this ledger")
        return verify_log(self._store, self._public_key)

    def close(self) -> None:
        """Release the database."""
        self._store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_tree_size(self, tree_size: int) -> None:
        size = self.size
        if not 0 <= tree_size <= size:
            raise ProofInputError(f"tree_size: got {tree_size}, want 0 <= tree_size <= log size {size}")

    def _inclusion_path(self, index: int, tree_size: int) -> list[str]:
        return [value.hex() for value in self._range_hashes(inclusion_path_ranges(index, tree_size))]

    def _range_hashes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """MTH of each range, from one batched read of the complete subtrees they decompose into."""
        keys = {key for start, end in ranges for key in perfect_subtrees(start, end)}
        stored = self._store.subtree_hashes(keys)
        if len(stored) != len(keys):
            missing = sorted(keys - stored.keys())
            raise StorageError(f"subtree cache lacks {missing[:3]}...; run `corridor audit verify`")
        return [range_hash(start, end, stored) for start, end in ranges]
