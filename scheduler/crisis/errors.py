"""The crisis registry's errors; the operator API answers each with one HTTP status::

    CrisisError
    ├── InvalidDeclaration   400  bad scope, reason or window (``param`` names it)
    ├── SelfApproval         403  the declarer approving their own declaration
    ├── UnknownDeclaration   404  no declaration with that id
    ├── WrongState           409  approving or revoking what no longer allows it
    └── CrisisStoreError          crisis.json cannot be read (the installation does not start)
"""

from __future__ import annotations


class CrisisError(Exception):
    """Base class of the crisis registry's errors."""

    code = "crisis_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


class InvalidDeclaration(CrisisError):
    """A scope, reason or window the registry cannot accept; ``param`` names the field."""

    code = "invalid_declaration"


class SelfApproval(CrisisError):
    """The declarer tried to approve their own declaration (two-person rule)."""

    code = "self_approval"


class UnknownDeclaration(CrisisError):
    """No declaration has this id."""

    code = "declaration_not_found"


class WrongState(CrisisError):
    """The declaration's status (or an earlier approval) does not allow this step."""

    code = "invalid_state"


class CrisisStoreError(CrisisError):
    """The store file is unreadable or invalid; fix or move it, the ledger keeps the history."""

    code = "crisis_store_error"
