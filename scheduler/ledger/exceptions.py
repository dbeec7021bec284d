"""Exceptions of the placement ledger.

Errors of the layers underneath (sqlite3, cryptography, pydantic) are
translated here, so callers see one vocabulary::

    LedgerError
    ├── InvalidEntryError        a draft that does not fit the entry model
    ├── NotFoundError            an index, tree head or ledger that does not exist
    ├── LedgerStateError         the ledger cannot take this call now
    │   ├── LedgerLockedError    another process holds the ledger open for writing
    │   └── LedgerClosedError    the ledger was closed
    ├── StorageError             the database failed; nothing was acknowledged
    │   └── LedgerUnavailableError  the shared database did not answer (also a
    │                            ``scheduler.database.DatabaseUnavailable``: 503, retry later)
    ├── SigningKeyError          a signing or public key that cannot be used
    ├── ProofError               an inclusion or consistency proof does not verify
    │   ├── ProofInputError      malformed proof input ("got X, want Y"); also a ValueError
    │   └── RootMismatchError    the recomputed root differs from the expected one
    ├── SignatureError           a tree head, checkpoint or cosignature whose key id or
    │                            signature does not verify
    ├── FormatError              a checkpoint, signed note, cosignature or witness record
    │                            that does not parse ("got X, want Y"); also a ValueError
    ├── VerificationError        a stored log or an export fails full verification;
    │                            names the first bad index and the check that failed
    └── WitnessError             the peer's ledger failed a witness check: cosign nothing,
        │                        raise ``peer_ledger_inconsistent``, stop forwarding to it
        ├── PeerSignatureError   the peer's head or checkpoint is not signed by its published
        │                        key (also a SignatureError)
        ├── PeerInconsistentError  the peer's head is not an extension of a head witnessed
        │                        before: its consistency proof does not verify
        └── PeerForkError        two different heads of one size, or a head (or log) smaller
                                 than one witnessed before
"""

from __future__ import annotations

from scheduler.database import DatabaseUnavailable


class LedgerError(Exception):
    """Base class of every ledger error."""


class InvalidEntryError(LedgerError, ValueError):
    """A draft that does not fit the entry model; the message names the field."""


class NotFoundError(LedgerError, LookupError):
    """An entry index, tree head or ledger database that does not exist."""


class LedgerStateError(LedgerError):
    """The ledger cannot take this call in its current state."""


class LedgerLockedError(LedgerStateError):
    """Another process holds the ledger open for writing; only one writer may append."""


class LedgerClosedError(LedgerStateError):
    """The ledger was closed; open a new one to append."""


class StorageError(LedgerError):
    """The database failed a write; none of the entries in that commit were acknowledged."""


class LedgerUnavailableError(StorageError, DatabaseUnavailable):
    """The ledger's PostgreSQL database did not answer in time; nothing was acknowledged, retry later."""


class SigningKeyError(LedgerError):
    """A signing key or public key that cannot be loaded or does not match its key id."""


class ProofError(LedgerError):
    """An inclusion or consistency proof that does not verify."""


class ProofInputError(ProofError, ValueError):
    """Malformed proof input: a size, index, hash length or proof length out of range."""


class RootMismatchError(ProofError):
    """The root recomputed from a proof differs from the expected root."""

    def __init__(self, got: bytes, want: bytes) -> None:
        self.got = got
        self.want = want
        super().__init__(f"root mismatch: got {got.hex()}, want {want.hex()}")


class SignatureError(LedgerError):
    """A tree head, checkpoint or cosignature whose key id or signature does not verify."""


class FormatError(LedgerError, ValueError):
    """A checkpoint, signed note, cosignature or witness record whose bytes do not follow its format."""


class VerificationError(LedgerError):
    """A stored log or an export that fails verification.

    ``index`` is the first bad leaf index when one can be named (``None`` when
    only a tree head is wrong); ``check`` names what failed (``missing``,
    ``leaf_hash``, ``entry``, ``index``, ``columns``, ``subtree_cache``,
    ``tree_head``, ``tree_head_key``, ``tree_head_signature``, ``tree_head_order``,
    ``tree_head_root``, ``inclusion``, ``line``); ``tree_size`` names the tree
    head involved, ``line`` the export line (1-based).
    """

    def __init__(
        self,
        check: str,
        message: str,
        *,
        index: int | None = None,
        tree_size: int | None = None,
        line: int | None = None,
    ) -> None:
        self.check = check
        self.index = index
        self.tree_size = tree_size
        self.line = line
        self.message = message
        where = []
        if line is not None:
            where.append(f"line {line}")
        if index is not None:
            where.append(f"index {index}")
        elif tree_size is not None:
            where.append(f"tree head of size {tree_size}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {check}: {message}" if prefix else f"{check}: {message}")


class WitnessError(LedgerError):
    """The peer's ledger failed a witness check; nothing was cosigned.

    The caller raises a Critical ``peer_ledger_inconsistent`` security event and
    stops forwarding to that peer until an operator clears it. ``site`` is the
    peer's site, ``tree_size`` the size of the offending head (or log).
    """

    def __init__(self, message: str, *, site: str, tree_size: int | None = None) -> None:
        self.site = site
        self.tree_size = tree_size
        super().__init__(f"peer {site}: {message}")


class PeerSignatureError(WitnessError, SignatureError):
    """The peer's tree head or checkpoint is not signed by the peer's published ledger key."""


class PeerInconsistentError(WitnessError):
    """The peer's head is not an extension of a head this site witnessed: its consistency proof fails.

    ``first`` is the size of the witnessed head the proof starts from.
    """

    def __init__(self, message: str, *, site: str, tree_size: int | None = None, first: int | None = None) -> None:
        self.first = first
        super().__init__(message, site=site, tree_size=tree_size)


class PeerForkError(WitnessError):
    """The peer showed two different heads of one size, or a head smaller than one witnessed.

    ``witnessed`` is the size of the witnessed head it contradicts.
    """

    def __init__(self, message: str, *, site: str, tree_size: int | None = None, witnessed: int | None = None) -> None:
        self.witnessed = witnessed
        super().__init__(message, site=site, tree_size=tree_size)
