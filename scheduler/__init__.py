"""Corridor's scheduler: pool inventory from Ray, placement, Ray binding, batch queue, ledger.

Depends on :mod:`policies`; never on :mod:`serving`.
"""
