"""Writing the placement ledger: durable group-committed appends and signed tree heads.

:class:`Ledger` is the single writer of ``$CORRIDOR_HOME/ledger.db``; its
signing key is ``$CORRIDOR_HOME/ledger-signing-key.pem`` (created on first
start) unless another is given. It reads like a
:class:`~scheduler.ledger.reader.LedgerReader`.

Group commit: callers queue drafts and block (or await); one writer thread
takes everything queued, assigns indexes and one timestamp, hashes the leaves
and the subtrees they complete, signs a tree head if one was asked for, writes
it all in one durable transaction, and only then wakes the callers. A blocking
caller that finds nothing committing or queued commits its own batch the same
way, without the round trip through the writer thread; one commit runs at a
time either way. The order
of indexes is the order of durability, and a crash never loses an
acknowledged entry. A failed commit acknowledges nothing of its batch and
leaves the in-memory tree as it was.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from policies.canonical import canonical_json
from scheduler.private_files import private_directory
from scheduler.ledger.entry import LedgerEntryDraft, utc_now
from scheduler.ledger.exceptions import InvalidEntryError, LedgerClosedError, LedgerError, StorageError
from scheduler.ledger.merkle import CompactRange, leaf_hash
from scheduler.ledger.reader import DB_FILENAME, LedgerReader
from scheduler.ledger.signing import (
    KEY_FILENAME,
    TreeHead,
    load_or_generate_signing_key,
    load_signing_key,
    sign_tree_head,
)
from scheduler.ledger.store import LedgerStore, SqliteStore, StoredLeaf


class _Batch:
    """Drafts queued for the next commit, and the outcome every caller waits for.

    A blocked caller waits on its own held lock. Once the batch is durable the
    committer releases only the first one, and each caller, once awake,
    releases the next (:meth:`wait_turn`): the callers of a batch take the GIL
    one after another instead of all waking at once and fighting for it, which
    costs several thread switches per append when dozens of threads block.
    """

    __slots__ = ("fields", "waiters", "async_waiters", "want_head", "items", "head", "error")

    def __init__(self) -> None:
        self.fields: list[dict[str, Any]] = []
        self.waiters: list[Any] = []
        self.async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future, int]] = []
        self.want_head = False
        self.items: list[dict[str, Any]] = []
        self.head: TreeHead | None = None
        self.error: BaseException | None = None

    def wait_turn(self, turn: int) -> None:
        """Block until the batch is settled and the caller before ``turn`` has woken, then wake the next.

        An interruption (KeyboardInterrupt in the main thread) is raised only
        after the wait: the entry commits anyway, and the callers after this
        one must still be woken.
        """
        waiter = self.waiters[turn]
        interrupted: BaseException | None = None
        while True:
            try:
                waiter.acquire()
                break
            except BaseException as exc:
                interrupted = exc
        if turn + 1 < len(self.waiters):  # the batch is closed: no waiter joins it any more
            self.waiters[turn + 1].release()
        if interrupted is not None:
            raise interrupted


def _draft_fields(draft: LedgerEntryDraft | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(draft, LedgerEntryDraft):
        try:
            draft = LedgerEntryDraft.model_validate(draft)
        except ValidationError as exc:
            raise InvalidEntryError(f"invalid ledger entry draft: {exc}") from exc
    return draft.fields()


def _resolve(outcomes: list[tuple[asyncio.Future, Any]], error: BaseException | None) -> None:
    """Settle the futures of one batch, in their event loop's thread."""
    for future, result in outcomes:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class Ledger(LedgerReader):
    """The writer of a ledger: durable group-committed appends and signed tree heads.

    Thread-safe. One per process and per database (a second process gets
    :class:`LedgerLockedError`). Call :meth:`close` (or use ``with``) to drain
    pending appends and sign a final tree head.
    """

    def __init__(self, store: LedgerStore, signing_key: Ed25519PrivateKey) -> None:
        super().__init__(store, signing_key.public_key())
        self._key = signing_key
        size = store.size()
        keys = CompactRange.subtrees(size)
        stored = store.subtree_hashes(keys)
        if len(stored) != len(keys):
            raise StorageError(f"subtree cache of {size} entries is incomplete; run `corridor audit verify`")
        self._compact = CompactRange(size, [stored[key] for key in keys])
        self._size = size
        self._last_head = store.latest_tree_head()
        self._commits = 0
        self._cond = threading.Condition()
        self._open = _Batch()
        self._busy = False  # someone holds the writer role: the writer thread or an inline caller
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._writer.start()

    @classmethod
    def open(cls, home: Path | str, *, signing_key_path: Path | str | None = None) -> Ledger:
        """Open (creating if needed) ``home/ledger.db`` for writing.

        The signing key is read from ``signing_key_path`` if given, else from
        ``home/ledger-signing-key.pem``, generated there on first start.
        """
        home = Path(home)
        private_directory(home)
        if signing_key_path is not None:
            key = load_signing_key(Path(signing_key_path))
        else:
            key = load_or_generate_signing_key(home / KEY_FILENAME)
        store = SqliteStore(home / DB_FILENAME, writer=True)
        try:
            return cls(store, key)
        except BaseException:
            store.close()
            raise

    @property
    def size(self) -> int:
        """Number of durably committed entries."""
        return self._size

    @property
    def commits(self) -> int:
        """Number of write transactions committed since this object was opened."""
        return self._commits

    def append(self, draft: LedgerEntryDraft | Mapping[str, Any]) -> dict[str, Any]:
        """Append one entry; return its item once it is durable. Blocks the calling thread."""
        batch, position = self._enqueue_and_wait([_draft_fields(draft)])
        return batch.items[position]

    def append_many(self, drafts: Iterable[LedgerEntryDraft | Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Append entries together, in order and in one transaction; return their items once durable."""
        fields = [_draft_fields(draft) for draft in drafts]
        if not fields:
            return []
        batch, position = self._enqueue_and_wait(fields)
        return batch.items[position : position + len(fields)]

    async def append_async(self, draft: LedgerEntryDraft | Mapping[str, Any]) -> dict[str, Any]:
        """Like :meth:`append`, awaiting durability without blocking the event loop.

        Cancelling the awaiting task does not withdraw the entry.
        """
        fields = _draft_fields(draft)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            batch, position = self._enqueue_locked([fields])
            batch.async_waiters.append((loop, future, position))
        return await future

    def latest_tree_head(self) -> dict[str, Any]:
        """The tree head of the current size, signing (and storing) a new one if the size changed."""
        last = self._last_head
        if last is not None and last.tree_size == self._size:
            return last.model_dump()
        batch, _ = self._enqueue_and_wait([], want_head=True)
        assert batch.head is not None
        return batch.head.model_dump()

    def close(self) -> None:
        """Commit what is queued, sign a final tree head if the size changed, release the database."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._open.want_head = True
                self._cond.notify()
        if self._writer.is_alive() and threading.current_thread() is not self._writer:
            self._writer.join()
        self._store.close()

    def _enqueue_and_wait(self, fields: list[dict[str, Any]], *, want_head: bool = False) -> tuple[_Batch, int]:
        """Commit ``fields`` (and a tree head if asked) and block until durable.

        When nothing is committing or queued, the caller commits its batch
        itself, sparing two thread switches; otherwise it joins the queued
        batch and the writer thread commits it.
        """
        with self._cond:
            if self._closed:
                raise LedgerClosedError("the ledger is closed; open a new one to append")
            inline = not (self._busy or self._open.fields or self._open.want_head)
            if inline:
                self._busy = True
            else:
                waiter = threading.Lock()
                waiter.acquire()
                batch, position = self._enqueue_locked(fields)
                turn = len(batch.waiters)
                batch.waiters.append(waiter)
                if want_head and not batch.want_head:
                    batch.want_head = True
                    self._cond.notify()
        if inline:
            batch, position = _Batch(), 0
            batch.fields, batch.want_head = fields, want_head
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify()
        else:
            batch.wait_turn(turn)
        if batch.error is not None:
            raise batch.error
        return batch, position

    def _enqueue_locked(self, fields: list[dict[str, Any]]) -> tuple[_Batch, int]:
        if self._closed:
            raise LedgerClosedError("the ledger is closed; open a new one to append")
        batch = self._open
        position = len(batch.fields)
        batch.fields.extend(fields)
        if position == 0 and fields:
            self._cond.notify()
        return batch, position

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while self._busy or not (self._open.fields or self._open.want_head or self._closed):
                    self._cond.wait()
                batch = self._open
                self._open = _Batch()
                stop = self._closed
                self._busy = True
            self._run(batch)
            with self._cond:
                self._busy = False
            if stop:
                return

    def _run(self, batch: _Batch) -> None:
        """Commit ``batch`` (by whoever holds the writer role), then wake everyone waiting on it."""
        try:
            self._commit(batch)
        except LedgerError as exc:
            batch.error = exc
        except Exception as exc:  # a bug must not leave callers waiting forever
            batch.error = StorageError(f"ledger writer failed: {exc!r}")
            batch.error.__cause__ = exc
        if batch.waiters:
            batch.waiters[0].release()  # each caller then wakes the next (_Batch.wait_turn)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
        for loop, future, position in batch.async_waiters:
            result = batch.items[position] if batch.error is None else None
            by_loop.setdefault(loop, []).append((future, result))
        for loop, outcomes in by_loop.items():  # one wake-up per event loop, not per future
            try:
                loop.call_soon_threadsafe(_resolve, outcomes, batch.error)
            except RuntimeError:
                pass  # the caller's event loop is closed; nobody is waiting

    def _commit(self, batch: _Batch) -> None:
        """Assign indexes and the timestamp, hash, sign a requested head, write one transaction."""
        compact = self._compact.copy()
        timestamp = utc_now()
        leaves: list[StoredLeaf] = []
        items: list[dict[str, Any]] = []
        for entry in batch.fields:  # each a fresh dict made for this append
            index = compact.size
            entry["index"] = index
            entry["timestamp"] = timestamp
            leaf = canonical_json(entry)
            value = leaf_hash(leaf)
            completed = b"".join([node for _, _, node in compact.append(value)])
            leaves.append(
                StoredLeaf(
                    index, leaf, value, completed, entry["tenant"], entry["kind"], entry["jurisdiction"], timestamp
                )
            )
            items.append({"index": index, "leaf_hash": value.hex(), "entry": entry})
        heads = []
        last = self._last_head
        if batch.want_head and (last is None or last.tree_size != compact.size):
            heads.append(sign_tree_head(self._key, compact.size, compact.root(), utc_now()))
        if leaves or heads:
            self._store.commit(leaves, heads)  # raises, and nothing below runs, if not durable
            self._commits += 1
        self._compact = compact
        self._size = compact.size
        if heads:
            self._last_head = heads[0]
        batch.head = self._last_head
        batch.items = items
