"""Which priority class a request belongs to when it waits for capacity (bundle data).

The bundle lists ``priority_classes``, highest first; a request belongs to the
first class whose conditions all hold (its tenant, its marking, an active
crisis declaration covering it), else to the implicit lowest class
``standard``. The admission queue serves a higher class first.

>>> from policies import Policy, Workload
>>> policy = Policy.load()
>>> priority_of(policy, Workload.create("fr-interior", "DR", model="corridor-tiny"))
(0, 'standard')
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from policies.bundle import Declaration
from policies.markings import parse_marking
from policies.rulebook import Policy
from policies.workload import Workload

STANDARD = "standard"


def priority_of(policy: Policy, workload: Workload, *, at: dt.datetime | None = None,
                declarations: Sequence[Declaration] = ()) -> tuple[int, str]:
    """``(rank, class id)``: rank 0 is served first; ``standard`` ranks after every class."""
    classes = policy.bundle.priority_classes
    covered: bool | None = None
    for rank, candidate in enumerate(classes):
        if candidate.tenants is not None and workload.tenant not in candidate.tenants:
            continue
        if candidate.markings is not None and workload.marking.id not in {
                parse_marking(m).id for m in candidate.markings}:
            continue
        if candidate.under_declaration:
            if covered is None:
                covered = bool(policy.covering_declarations(workload, at=at, declarations=declarations))
            if not covered:
                continue
        return rank, candidate.id
    return len(classes), STANDARD
