"""The bundle archive (write-once, by digest) and the replay of recorded decisions.

Every bundle that was ever in force is kept so that any decision can be made
again later with exactly the rules of its time. A bundle is stored as the
canonical JSON of its validated form (:func:`policies.canonical.canonical_json`
of ``Bundle.model_dump(mode="json")``) — the very bytes whose SHA-256 is the
bundle's digest — under ``<directory>/<hex>.json``, ``<hex>`` being the 64 hex
digits of the digest. A file is written once (temporary file, then a hard
link, which never replaces an existing file); storing the same bundle again is
a no-op, storing different bytes under an existing digest is refused. Reading
back recomputes the digest, so an altered file is detected
(:class:`ArchiveDigestMismatch`).

:func:`replay` takes the facts a ledger entry kept (:meth:`Decision.facts`),
a policy (normally ``archive.policy(facts["policy"]["digest"])``) and the
declarations of the time (:meth:`Declaration.from_json` of the ledger's crisis
entries), decides again and reports every difference.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from policies.bundle import Bundle, Declaration
from policies.canonical import canonical_json, sha256_hex
from policies.decision import Decision
from policies.exceptions import (
    ArchiveConflictError, ArchiveDigestMismatch, BundleError, BundleNotArchived,
)
from policies.loading import validate_document
from policies.rulebook import Policy
from policies.validation import check_references
from policies.workload import Workload

_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")

ARCHIVE_DIRNAME = "bundles"
"""The archive's folder inside an installation's ``$CORRIDOR_HOME``."""


class BundleArchive:
    """Bundles by digest in one directory (created if missing). Safe to share between processes."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Nothing to release (the database twin, ``scheduler.bundle_store``, closes its pool)."""

    def path(self, digest: str) -> Path:
        """Where ``digest`` is (or would be) stored; ``ValueError`` for a malformed digest."""
        return self.directory / f"{check_digest(digest)}.json"

    def put(self, bundle: Bundle) -> str:
        """Store ``bundle`` (no-op if already there); returns its digest.

        Who calls it: whoever puts a bundle in force (``corridor up``, ``policy apply``),
        before the first decision made with it.
        """
        digest, data = archived_bytes(bundle)
        target = self.path(digest)
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o444)
            try:
                os.link(temporary, target)
            except FileExistsError:
                if target.read_bytes() != data:
                    raise ArchiveConflictError(digest, str(target)) from None
        finally:
            os.unlink(temporary)
        return digest

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and _DIGEST.match(digest) is not None and self.path(digest).exists()

    def digests(self) -> list[str]:
        """Digests of every archived bundle, sorted."""
        return sorted(f"sha256:{p.stem}" for p in self.directory.glob("*.json")
                      if re.fullmatch(r"[0-9a-f]{64}", p.stem))

    def get(self, digest: str) -> Bundle:
        """The bundle stored under ``digest``, checked: bytes hash to it, schema and references valid."""
        target = self.path(digest)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise BundleNotArchived(digest, str(self.directory)) from None
        return archived_bundle(data, digest, str(target))

    def policy(self, digest: str) -> Policy:
        """The archived bundle compiled, ready to :func:`replay` decisions with."""
        return Policy(self.get(digest))


def archived_bundle(data: bytes, digest: str, where: str) -> Bundle:
    """The bundle whose archived bytes are ``data``, checked: they hash to ``digest``
    (:class:`ArchiveDigestMismatch` if not), schema and references valid; ``where`` names the
    place in errors. Every archive (this directory, or a database) reads back through it."""
    got = "sha256:" + sha256_hex(data)
    if got != digest:
        raise ArchiveDigestMismatch(digest, got, where)
    bundle = validate_document(json.loads(data), Bundle, where)
    issues = check_references(bundle, where)
    if issues:
        raise BundleError(issues)
    return bundle


def archived_bytes(bundle: Bundle) -> tuple[str, bytes]:
    """``(digest, bytes)`` under which ``bundle`` is archived: its canonical JSON and SHA-256."""
    data = canonical_json(bundle.model_dump(mode="json"))
    return "sha256:" + sha256_hex(data), data


def check_digest(digest: str) -> str:
    """The 64 hex digits of a ``sha256:…`` digest; ``ValueError`` for a malformed one."""
    match = _DIGEST.match(digest) if isinstance(digest, str) else None
    if match is None:
        raise ValueError(f"digest: got {digest!r}, want 'sha256:' and 64 lowercase hex digits")
    return match.group(1)


class ReplayResult(NamedTuple):
    """The outcome of replaying one decision; ``differences`` is empty exactly when ``matches``."""

    decision_id: str
    matches: bool
    verdict_matches: bool
    rules_match: bool
    differences: tuple[str, ...]
    replayed: Decision


def replay(facts: Mapping[str, Any], policy: Policy, declarations: Sequence[Declaration] = (),
           at: dt.datetime | None = None) -> ReplayResult:
    """Decide again what ``facts`` (:meth:`Decision.facts`) record, and compare.

    ``at`` defaults to the recorded decision time. Compared: the policy digest,
    the verdict, the rule ids, the declaration, the accreditations relied on,
    and the decision id. Never raises for a difference; a malformed ``facts``
    raises ``KeyError``/``ValueError``.
    """
    when = at or dt.datetime.fromisoformat(facts["at"])
    workload = Workload.from_json(facts["workload"], id=facts.get("workload_id"))
    decision = policy.decide(workload, facts["pool"], at=when, declarations=declarations)
    again = decision.facts()
    differences = []
    if policy.digest != facts["policy"]["digest"]:
        differences.append(f"policy digest: recorded {facts['policy']['digest']}, replayed with "
                           f"{policy.digest}")
    known = {d.id for d in (*policy.bundle.declarations, *declarations)}
    if facts.get("declaration") and facts["declaration"] not in known:
        differences.append(f"declaration {facts['declaration']} was not given to the replay")
    verdict_matches = again["allowed"] == facts["allowed"]
    if not verdict_matches:
        differences.append(f"verdict: recorded {'allowed' if facts['allowed'] else 'denied'}, "
                           f"replayed {'allowed' if again['allowed'] else 'denied'}")
    rules_match = again["rules"] == list(facts["rules"])
    if not rules_match:
        differences.append(f"rules: recorded {list(facts['rules'])}, replayed {again['rules']}")
    for key in ("declaration", "accreditations"):
        if again[key] != facts.get(key):
            differences.append(f"{key}: recorded {facts.get(key)!r}, replayed {again[key]!r}")
    if not differences and again["decision_id"] != facts["decision_id"]:
        differences.append(f"decision id: recorded {facts['decision_id']}, replayed "
                           f"{again['decision_id']}")
    return ReplayResult(facts["decision_id"], not differences, verdict_matches, rules_match,
                        tuple(differences), decision)
