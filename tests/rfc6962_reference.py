"""An independent RFC 6962 implementation, written from the RFC text, for checking the ledger.

Shares no code with ``scheduler.ledger``: MTH, PATH and PROOF/SUBPROOF are the
recursive definitions of RFC 6962 section 2.1 over the leaf *bytes*;
verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2; leaf bytes are the
canonical JSON of DESIGN.md written with ``json.dumps``; tree-head signatures
are checked with the raw Ed25519 primitive. Used by the ledger's unit tests and
by the end-to-end tier, as an outside auditor would.
"""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def HASH(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def MTH(D: list[bytes]) -> bytes:
    """RFC 6962 2.1: the Merkle Tree Hash of the list of data entries D."""
    n = len(D)
    if n == 0:
        return HASH(b"")
    if n == 1:
        return HASH(b"\x00" + D[0])
    k = largest_power_of_two_below(n)
    return HASH(b"\x01" + MTH(D[:k]) + MTH(D[k:]))


def PATH(m: int, D: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1: the audit path of leaf m in the tree of D."""
    n = len(D)
    if n == 1:
        return []
    k = largest_power_of_two_below(n)
    if m < k:
        return PATH(m, D[:k]) + [MTH(D[k:])]
    return PATH(m - k, D[k:]) + [MTH(D[:k])]


def SUBPROOF(m: int, D: list[bytes], b: bool) -> list[bytes]:
    """RFC 6962 2.1.2."""
    n = len(D)
    if m == n:
        return [] if b else [MTH(D)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return SUBPROOF(m, D[:k], b) + [MTH(D[k:])]
    return SUBPROOF(m - k, D[k:], False) + [MTH(D[:k])]


def PROOF(m: int, D: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.2: the consistency proof from the first m entries to all of D."""
    return SUBPROOF(m, D, True)


def accepts_inclusion(leaf_index: int, tree_size: int, leaf_hash: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = HASH(b"\x01" + p + r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = HASH(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def accepts_consistency(first: int, second: int, path: list[bytes], first_hash: bytes, second_hash: bytes) -> bool:
    """RFC 9162 2.1.4.2, step by step (first == second: empty path, equal roots)."""
    if first == second:
        return not path and first_hash == second_hash
    if not path or first == 0 or first > second:
        return False
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = HASH(b"\x01" + c + fr)
            sr = HASH(b"\x01" + c + sr)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = HASH(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


def leaf_bytes(entry: dict) -> bytes:
    """DESIGN.md: sorted keys, separators ',' and ':', UTF-8, no ASCII escaping."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature_verifies(head: dict, public_key: dict) -> bool:
    raw = base64.b64decode(public_key["public_key"])
    if hashlib.sha256(raw).hexdigest() != public_key["key_id"] or head["key_id"] != public_key["key_id"]:
        return False
    signed = leaf_bytes({k: head[k] for k in ("tree_size", "root_hash", "timestamp", "key_id")})
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(head["signature"]), signed)
    except Exception:
        return False
    return True
