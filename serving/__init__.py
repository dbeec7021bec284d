"""Corridor's serving layer: vLLM replicas as Ray actors, the sovereign gateway, the CLI.

Depends on :mod:`scheduler` and :mod:`policies`.
"""
