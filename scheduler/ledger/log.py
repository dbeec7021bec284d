"""Writing the placement ledger: durable group-committed appends and signed tree heads.

:class:`Ledger` writes ``$CORRIDOR_HOME/ledger.db`` (the only writer of that file),
or a PostgreSQL database shared by the site's gateway processes (one writer in
each); its signing key is ``$CORRIDOR_HOME/ledger-signing-key.pem`` (created on
first start) unless another is given, the same key in every process of a site.
It reads like a :class:`~scheduler.ledger.reader.LedgerReader`.

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

Several processes: each commit runs inside the store's sequencer
(:meth:`~scheduler.ledger.store.LedgerStore.sequenced`), where no other writer
appends. There the writer reads the stored size; if other processes appended
since its last commit, it first checks that the stored subtrees still cover
its own tree (no fork) and brings its compact range up to the stored size from
the stored subtree hashes (O(log n) rows), then assigns the next indexes. So
one batch is one transaction in every process, and indexes run on without gap
or duplicate across all of them.

One module because the queue of callers, the writer role and the catch-up under
the sequencer are one state machine around one in-memory tree.
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
from scheduler.ledger.reader import LedgerReader, open_store
from scheduler.ledger.signing import (
    KEY_FILENAME,
    TreeHead,
    load_or_generate_signing_key,
    load_signing_key,
    sign_tree_head,
)
from scheduler.ledger.store import LedgerStore, Sequenced, StoredLeaf


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

    Thread-safe. One per process and per database: on SQLite a second
    process gets :class:`LedgerLockedError`; on PostgreSQL every process of
    the site opens its own, and they share one log order. Call :meth:`close`
    (or use ``with``) to drain pending appends and sign a final tree head.
    """

    def __init__(self, store: LedgerStore, signing_key: Ed25519PrivateKey) -> None:
        super().__init__(store, signing_key.public_key())
        self._key = signing_key
        self._compact = _stored_range(store, store.size())
        self._size = self._compact.size
        self._last_head = store.latest_tree_head()
        self._commits = 0
        self._cond = threading.Condition()
        self._open = _Batch()
        self._busy = False  # someone holds the writer role: the writer thread or an inline caller
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._writer.start()

    @classmethod
    def open(
        cls, home: Path | str, *, database: str | None = None, signing_key_path: Path | str | None = None
    ) -> Ledger:
        """Open (creating if needed) ``home/ledger.db``, or the ledger in PostgreSQL ``database``, for writing.

        The signing key is read from ``signing_key_path`` if given, else from
        ``home/ledger-signing-key.pem``, generated there on first start.
        """
        home = Path(home)
        private_directory(home)
        if signing_key_path is not None:
            key = load_signing_key(Path(signing_key_path))
        else:
            key = load_or_generate_signing_key(home / KEY_FILENAME)
        store = open_store(home, database=database, writer=True)
        try:
            return cls(store, key)
        except BaseException:
            store.close()
            raise

    @property
    def size(self) -> int:
        """Number of durably committed entries (by every process, on a shared store)."""
        return self._store.size() if self._store.shared else self._size

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
        if last is not None and last.tree_size == self.size:
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
        """Inside the sequencer: catch up, assign indexes and the timestamp, hash, sign a requested head,
        write one transaction."""
        with self._store.sequenced() as log:
            compact = self._caught_up(log)
            leaves, items, heads, last = self._build(batch, compact, log)
            if leaves or heads:
                log.write(leaves, heads)  # durable when the block ends; raises, and nothing below runs, if not
        if leaves or heads:
            self._commits += 1
        self._compact = compact
        self._size = compact.size
        self._last_head = heads[0] if heads else last
        batch.head = self._last_head
        batch.items = items

    def _caught_up(self, log: Sequenced) -> CompactRange:
        """A copy of the in-memory tree, brought up to the stored size if other processes appended."""
        compact = self._compact.copy()
        if not self._store.shared:
            return compact  # the only writer: the stored size is ours
        size = log.size()
        if size == compact.size:
            return compact
        if size < compact.size:
            raise StorageError(
                f"the stored log holds {size} entries, fewer than the {compact.size} this writer committed; "
                "run `corridor audit verify`"
            )
        mine, theirs = CompactRange.subtrees(compact.size), CompactRange.subtrees(size)
        stored = log.subtree_hashes({*mine, *theirs})
        if [stored.get(key) for key in mine] != compact.hashes:
            raise StorageError(
                f"the stored subtrees of the first {compact.size} entries differ from this writer's tree "
                "(a fork); run `corridor audit verify`"
            )
        return _range_of(size, theirs, stored)

    def _build(
        self, batch: _Batch, compact: CompactRange, log: Sequenced
    ) -> tuple[list[StoredLeaf], list[dict[str, Any]], list[TreeHead], TreeHead | None]:
        """Assign indexes from ``compact.size`` on (appending to ``compact``), hash, sign a requested head."""
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
        if batch.want_head:
            if self._store.shared:
                last = log.latest_tree_head()  # another process may have signed this size already
            if last is None or last.tree_size != compact.size:
                heads.append(sign_tree_head(self._key, compact.size, compact.root(), utc_now()))
        return leaves, items, heads, last


def _range_of(size: int, keys: list[tuple[int, int]], stored: Mapping[tuple[int, int], bytes]) -> CompactRange:
    if any(key not in stored for key in keys):
        raise StorageError(f"subtree cache of {size} entries is incomplete; run `corridor audit verify`")
    return CompactRange(size, [stored[key] for key in keys])


def _stored_range(store: LedgerStore, size: int) -> CompactRange:
    """The compact range of the first ``size`` stored entries, from their stored subtree hashes."""
    keys = CompactRange.subtrees(size)
    return _range_of(size, keys, store.subtree_hashes(keys))
