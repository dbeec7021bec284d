"""Canonical JSON: the one byte form that digests, signatures and ledger leaves use.

Canonical means: keys sorted, separators ``,`` and ``:`` with no spaces, UTF-8,
non-ASCII characters written as themselves (no ``\\u`` escapes).

>>> canonical_json({"b": 1, "a": "é"})
b'{"a":"\\xc3\\xa9","b":1}'
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON bytes of ``value`` (JSON types only)."""
    return _ENCODER.encode(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
