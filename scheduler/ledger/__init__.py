"""The placement ledger: every decision, allow or deny, in an append-only RFC 6962 Merkle log.

- :mod:`~scheduler.ledger.entry`: the entry; a leaf is the canonical JSON of one;
- :mod:`~scheduler.ledger.merkle`: RFC 6962 / RFC 9162 hashing and proofs, pure;
- :mod:`~scheduler.ledger.signing`: the Ed25519 key and signed tree heads;
- :mod:`~scheduler.ledger.store`: SQLite storage behind a small interface;
- :mod:`~scheduler.ledger.pg_store`: PostgreSQL storage, one log shared by a site's processes;
- :mod:`~scheduler.ledger.log`: :class:`Ledger`, the writer (group commit); :func:`open_ledger`;
- :mod:`~scheduler.ledger.reader`: :class:`LedgerReader`, queries, proofs, exports;
- :mod:`~scheduler.ledger.verify`: full verification of a stored log or an export;
- :mod:`~scheduler.ledger.note`, :mod:`~scheduler.ledger.note_signing`: C2SP signed notes;
- :mod:`~scheduler.ledger.checkpoint`: C2SP checkpoints of the tree heads, and cosignatures;
- :mod:`~scheduler.ledger.witness`: witnessing the peer's ledger, with the checks of
  :mod:`~scheduler.ledger.peer_checks`; :mod:`~scheduler.ledger.witness_audit`: auditing it;
- :mod:`~scheduler.ledger.exceptions`: the errors, and their hierarchy.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as home, Ledger.open(home) as ledger:
...     item = ledger.append(LedgerEntryDraft(kind="placement", tenant="fr-interior", allowed=True))
...     proof = ledger.inclusion_proof(item["index"], ledger.size)
...     (item["index"], proof["inclusion_path"], ledger.verify().size)
(0, [], 1)
"""

from __future__ import annotations

from pathlib import Path

from scheduler.ledger.entry import EntryKind, LedgerEntry, LedgerEntryDraft, Workload
from scheduler.ledger.exceptions import (
    InvalidEntryError,
    LedgerClosedError,
    LedgerError,
    LedgerLockedError,
    LedgerStateError,
    LedgerUnavailableError,
    NotFoundError,
    ProofError,
    ProofInputError,
    RootMismatchError,
    SignatureError,
    SigningKeyError,
    StorageError,
    VerificationError,
)
from scheduler.ledger.log import Ledger
from scheduler.ledger.reader import DB_FILENAME, LedgerReader
from scheduler.ledger.signing import KEY_FILENAME, PublicKey, TreeHead
from scheduler.ledger.store import LedgerStore, Sequenced, SqliteStore
from scheduler.ledger.verify import ExportReport, LogReport, verify_export, verify_log

__all__ = [
    "DB_FILENAME", "KEY_FILENAME", "EntryKind", "ExportReport", "InvalidEntryError", "Ledger",
    "LedgerClosedError", "LedgerEntry", "LedgerEntryDraft", "LedgerError", "LedgerLockedError",
    "LedgerReader", "LedgerStateError", "LedgerStore", "LedgerUnavailableError", "LogReport", "NotFoundError",
    "ProofError", "ProofInputError", "PublicKey", "RootMismatchError", "Sequenced", "SignatureError",
    "SigningKeyError", "SqliteStore", "StorageError", "TreeHead", "VerificationError", "Workload", "open_ledger",
    "verify_export", "verify_log",
]


def open_ledger(home: Path, *, database: str | None = None, signing_key_path: Path | None = None) -> Ledger:
    """The site's ledger writer: SQLite in ``home`` when ``database`` is None, else PostgreSQL at that URL.

    The signing key is ``signing_key_path``, or ``home/ledger-signing-key.pem`` (every process
    of a site must sign with the same key: share the file or the Secret that holds it).
    """
    return Ledger.open(home, database=database, signing_key_path=signing_key_path)
