"""An approximate prefix index: which replica probably holds a request's prefix in its KV cache.

vLLM keeps the KV blocks of recent prompts and reuses them when a new prompt
starts with the same tokens (automatic prefix caching). The gateway cannot see
those caches, so it remembers what it sent where:

- the request's text is cut into fixed-size blocks of characters (``block_chars``,
  64 by default: about 16 tokens, vLLM's block size, at ~4 characters a token);
- each block's hash is chained to the previous one, and the chain is *seeded*
  with the model and the tenant's cache namespace, so block ``i``'s hash stands
  for the whole prefix up to it, and two tenants (or two models) never match;
- each replica keeps the hashes of the blocks sent to it in a bounded LRU.

A replica's affinity for a request is the number of leading blocks it holds,
over the request's block count. The index only ever guesses: a replica may
have evicted a block it still lists, or cached one it never got from this
gateway. Hashes use Python's own string hash (randomised per process), which is
enough for one gateway process's in-memory index and nothing else.

>>> index = PrefixIndex(block_chars=4, max_blocks=8, capacity=16)
>>> sent = index.hashes("tiny", "t1", "abcdefgh-xyz")
>>> len(sent), index.matched("r1", sent)
(3, 0)
>>> index.record("r1", sent)
>>> index.matched("r1", index.hashes("tiny", "t1", "abcdefgh-other"))
2
>>> index.matched("r1", index.hashes("tiny", "t2", "abcdefgh-other"))
0
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixIndex:
    """Per replica, the block hashes recently sent to it (an LRU of ``capacity`` blocks)."""

    def __init__(self, *, block_chars: int = 64, max_blocks: int = 256, capacity: int = 31_250) -> None:
        if block_chars < 1 or max_blocks < 1 or capacity < 1:
            raise ValueError(f"prefix index: got block_chars={block_chars}, max_blocks={max_blocks}, "
                             f"capacity={capacity}; want each >= 1, e.g. 64, 256 and 31250")
        self.block_chars = block_chars
        self.max_blocks = max_blocks
        self.capacity = capacity
        self._replicas: dict[str, OrderedDict[int, None]] = {}

    def hashes(self, model: str, namespace: str, text: str) -> tuple[int, ...]:
        """The chained hashes of the full blocks of ``text`` (at most ``max_blocks``); a text
        shorter than one block has none."""
        size = self.block_chars
        end = min(len(text) // size, self.max_blocks) * size
        previous = hash((model, namespace))
        chain = []
        for start in range(0, end, size):
            previous = hash((previous, text[start:start + size]))
            chain.append(previous)
        return tuple(chain)

    def matched(self, replica_id: str, hashes: Sequence[int]) -> int:
        """How many leading blocks of ``hashes`` the replica holds."""
        blocks = self._replicas.get(replica_id)
        if not blocks or not hashes:
            return 0
        if hashes[-1] in blocks:  # the whole prefix: the usual case for a repeated prompt
            return len(hashes)
        count = 0
        for value in hashes:
            if value not in blocks:
                break
            count += 1
        return count

    def record(self, replica_id: str, hashes: Sequence[int]) -> None:
        """Remember that ``hashes`` were sent to the replica (most recent last; oldest evicted)."""
        if not hashes:
            return
        blocks = self._replicas.get(replica_id)
        if blocks is None:
            blocks = self._replicas[replica_id] = OrderedDict()
        for value in hashes:
            blocks[value] = None
            blocks.move_to_end(value)
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)

    def forget(self, replica_id: str) -> None:
        """Drop a replica's blocks (it stopped, or restarted with an empty cache)."""
        self._replicas.pop(replica_id, None)

    def size(self, replica_id: str) -> int:
        return len(self._replicas.get(replica_id, ()))
