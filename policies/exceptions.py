"""Exceptions of the rulebook.

A policy *deny* is never an exception: it is a :class:`policies.Decision`
returned by ``decide``. Exceptions here mean bad input that cannot even be
evaluated, and callers translate them into their own error format::

    PolicyError
    ├── UnknownMarkingError   a marking string that names no known marking
    ├── UnknownDataFlagError  a data flag that is not health/personal/sensitive
    ├── UnknownCaveatError    a national-only caveat that is not in the markings catalogue
    ├── BundleError           a policy bundle that fails to load or validate
    ├── BundleSignatureError  a bundle without a valid signature of a trusted operator key
    └── ArchiveError          the bundle archive cannot do what was asked
        ├── ArchiveConflictError   a digest already stored with different bytes (write-once)
        ├── ArchiveDigestMismatch  stored bytes whose SHA-256 is not their digest (altered)
        └── BundleNotArchived      no bundle stored under that digest
"""

from __future__ import annotations

from dataclasses import dataclass


class PolicyError(Exception):
    """Base class of every rulebook error."""


class UnknownMarkingError(PolicyError, ValueError):
    """A marking string that parses to no known marking; the message lists the known ones."""

    def __init__(self, value: str, known: list[str]) -> None:
        self.value = value
        self.known = known
        super().__init__(f"unknown marking {value!r}; known markings: {', '.join(known)}")


class UnknownDataFlagError(PolicyError, ValueError):
    """A data flag that is not one of the known flags."""

    def __init__(self, value: str, known: list[str]) -> None:
        self.value = value
        self.known = known
        super().__init__(f"unknown data flag {value!r}; known data flags: {', '.join(known)}")


class UnknownCaveatError(PolicyError, ValueError):
    """A caveat string that names no caveat of the markings catalogue."""

    def __init__(self, value: str, known: list[str]) -> None:
        self.value = value
        self.known = known
        super().__init__(f"unknown caveat {value!r}; known caveats: {', '.join(known)}")


@dataclass(frozen=True)
class BundleIssue:
    """One thing wrong in a bundle: where (file, path inside it) and what."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class BundleError(PolicyError):
    """A policy bundle that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[BundleIssue]) -> None:
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"invalid policy bundle ({len(issues)} problem(s)):\n{lines}")


class BundleSignatureError(PolicyError):
    """A bundle whose detached signature is missing, malformed, untrusted or wrong.

    ``code`` says which: ``UNSIGNED``, ``MALFORMED``, ``UNTRUSTED_KEY``,
    ``BAD_SIGNATURE``. Callers refuse the bundle; an operator fixes it by
    signing with a listed key (``corridor policy sign``) or listing the key.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class ArchiveError(PolicyError):
    """Base class of the bundle archive's errors (:mod:`policies.archive`)."""


class ArchiveConflictError(ArchiveError):
    """A file for this digest exists with different bytes; the archive is write-once."""

    def __init__(self, digest: str, path: str) -> None:
        self.digest = digest
        super().__init__(f"{path}: already holds different bytes for {digest}; archived bundles "
                         f"are never overwritten")


class ArchiveDigestMismatch(ArchiveError):
    """The stored bytes do not hash to the digest they are stored under: the file was altered."""

    def __init__(self, digest: str, got: str, path: str) -> None:
        self.digest = digest
        self.got = got
        super().__init__(f"{path}: stored bytes hash to {got}, want {digest}; the archived bundle "
                         f"was altered")


class BundleNotArchived(ArchiveError, KeyError):
    """No bundle is stored under the digest asked for."""

    def __init__(self, digest: str, directory: str) -> None:
        self.digest = digest
        super().__init__(f"no bundle {digest} in the archive {directory}")

    def __str__(self) -> str:
        return str(self.args[0])
