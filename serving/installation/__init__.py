"""What ``corridor up`` builds: a whole site on one machine or on an existing Ray cluster.

- :mod:`~serving.installation.settings`: :class:`~serving.installation.settings.UpConfig` and
  the demo deployments (light: no Ray);
- :mod:`~serving.installation.installation`: :class:`~serving.installation.installation.Installation`,
  start and stop in steps (loads Ray through the scheduler's binding);
- :mod:`~serving.installation.adapters`: the scheduler as the gateway reads it;
- :mod:`~serving.installation.stores`: where a site keeps its state (files and SQLite, or its
  PostgreSQL database);
- several gateway processes per site: :mod:`~serving.installation.control` (the control
  process and the workers it starts), :mod:`~serving.installation.worker` (one gateway worker,
  no Ray), :mod:`~serving.installation.published` (what the control process tells the workers
  through the database).

This package's ``__init__`` imports nothing, so the CLI can read the settings without Ray.
"""
