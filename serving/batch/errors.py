"""The Batch API's refusals, in the domain's words; the gateway answers each with one status::

    BatchError
    ├── InvalidBatchRequest   400  a bad parameter, file or marking (``param`` names it)
    ├── BatchForbidden        403  refused by the rulebook, or no batch capacity
    ├── BatchNotFound         404  no such file or batch for this tenant
    ├── BatchConflict         409  the batch's state does not allow it (e.g. cancel a completed one)
    └── FileTooLarge          413  an upload over the limit

Each carries an OpenAI-style ``code`` (e.g. ``file_not_found``) and the ``param`` at fault.
"""

from __future__ import annotations


class BatchError(Exception):
    """Base class: ``message``, ``code`` and ``param`` for the caller."""

    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


class InvalidBatchRequest(BatchError):
    """A parameter, input file, marking or data flag the service cannot accept."""


class BatchForbidden(BatchError):
    """The rulebook refuses the batch (the message names the rules), or the tenant has no quota."""


class BatchNotFound(BatchError):
    """No file or batch with that id belongs to the caller's tenant."""


class BatchConflict(BatchError):
    """The batch's current state does not allow the operation; read it and decide anew."""


class FileTooLarge(BatchError):
    """An uploaded file over ``BatchSettings.max_file_bytes``."""
