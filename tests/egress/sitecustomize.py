"""Loaded by every Python process started with this directory on its PYTHONPATH: when
``CORRIDOR_EGRESS_LOG`` names a file, record each attempt to reach a host outside loopback there."""

import os

if os.environ.get("CORRIDOR_EGRESS_LOG"):
    import egress_hook

    egress_hook.install_from_env()
