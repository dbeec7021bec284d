"""What ``corridor up`` builds: a whole site on one machine or on an existing Ray cluster.

- :mod:`~serving.installation.settings`: :class:`~serving.installation.settings.UpConfig` and
  the demo deployments (light: no Ray);
- :mod:`~serving.installation.installation`: :class:`~serving.installation.installation.Installation`,
  start and stop in steps (loads Ray through the scheduler's binding);
- :mod:`~serving.installation.adapters`: the scheduler as the gateway reads it.

This package's ``__init__`` imports nothing, so the CLI can read the settings without Ray.
"""
