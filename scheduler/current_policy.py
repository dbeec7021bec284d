"""The policy in force, shared: one holder that the router, the rate limiter, the scheduler and
the inventory all read at each use, so a new bundle takes effect for all of them at once.

``corridor policy apply`` (:mod:`serving.policy_switch`) calls :meth:`CurrentPolicy.switch`;
listeners then run in the switching thread (the gateway's own copy, the crisis registry, a
healing pass of the scheduler). A reader takes :attr:`CurrentPolicy.policy` once per decision,
so no decision mixes two bundles.

>>> from policies import Policy
>>> current = CurrentPolicy(Policy.load())
>>> seen = []
>>> current.subscribe(lambda old, new: seen.append(new.digest == old.digest))
>>> _ = current.switch(Policy.load())
>>> seen
[True]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from policies import Policy

log = logging.getLogger(__name__)

Listener = Callable[[Policy, Policy], object]


class CurrentPolicy:
    """The policy in force; :meth:`switch` replaces it and tells every listener."""

    def __init__(self, policy: Policy) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(f"policy: got {type(policy).__name__}, want a compiled Policy, "
                            f"e.g. CurrentPolicy(Policy.load())")
        self._policy = policy
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        """The policy in force now."""
        return self._policy

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` after every switch, in the switching thread."""
        self._listeners.append(listener)

    def switch(self, policy: Policy) -> Policy:
        """Put ``policy`` in force for every reader at once; return the one it replaced.

        A failing listener is logged and the others still run: the switch itself has
        happened and is never undone by a listener.
        """
        with self._lock:
            old, self._policy = self._policy, policy
        for listener in list(self._listeners):
            try:
                listener(old, policy)
            except Exception:  # noqa: BLE001 - the switch stands; report the listener's bug
                log.exception("a listener of the policy switch failed")
        return old


def current_of(source: Policy | CurrentPolicy) -> CurrentPolicy:
    """A holder for ``source``: itself if it is one, else a new holder of that policy."""
    return source if isinstance(source, CurrentPolicy) else CurrentPolicy(source)
