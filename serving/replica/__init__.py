"""A vLLM replica as a Ray actor, and the guard that ends its engine processes with it.

- :mod:`~serving.replica.actor`: :class:`~serving.replica.actor.VLLMReplica` (imports no Ray
  itself; the binder wraps it in ``ray.remote``) and the offline environment of its server;
- :mod:`~serving.replica.guard`: a detached process-group watchdog (``python -m
  serving.replica.guard``), because Ray ends only an actor's direct children.
"""
