"""Crisis declarations made at run time: two persons across the border, time-boxed, durable.

A declaration names its scope (tenants, markings, models, directions), a
reason and a window of at most the bundle's ``settings.crisis_max_hours``,
counted from the moment it is declared. Its status is what
:meth:`policies.Declaration.status` computes::

    declare ─► pending ─(approved by an operator of the other jurisdiction)─► active
                 │   └─ window ends ─► expired ◄─ window ends ─┤
                 └─ revoke ─► revoked ◄─ revoke (either side, at once) ─┘

- :mod:`~scheduler.crisis.errors`: the errors, one HTTP status each in the operator API;
- :mod:`~scheduler.crisis.record`: a declaration as stored, and its wire shape;
- :mod:`~scheduler.crisis.store`: ``crisis.json`` in ``$CORRIDOR_HOME``, written atomically;
- :mod:`~scheduler.crisis.registry`: :class:`CrisisRegistry`, the steps and their ledger entries.

The registry lives with the scheduler because the scheduler acts on it (a
change runs a healing pass at once, so crossed replicas are placed, or drained
and removed, within seconds) and it needs only the rulebook and the ledger.
"""

from scheduler.crisis.errors import (CrisisError, CrisisStoreError, InvalidDeclaration, SelfApproval,
                                     UnknownDeclaration, WrongState)
from scheduler.crisis.record import CrisisRecord
from scheduler.crisis.registry import CrisisRegistry
from scheduler.crisis.store import STORE_FILENAME, read_declarations

__all__ = ["STORE_FILENAME", "CrisisError", "CrisisRecord", "CrisisRegistry", "CrisisStoreError",
           "InvalidDeclaration", "SelfApproval", "UnknownDeclaration", "WrongState",
           "read_declarations"]
