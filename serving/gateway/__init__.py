"""The sovereign gateway: OpenAI-compatible inference admitted by the rulebook, plus the
auditor and operator APIs. Build one with :func:`create_app` around a :class:`Gateway`."""

from serving.gateway.app import create_app
from serving.gateway.auth import Authenticator, KeyStore, Principal
from serving.gateway.routing import Endpoint, Router, StaticEndpoints
from serving.gateway.service import Gateway

__all__ = ["Authenticator", "Endpoint", "Gateway", "KeyStore", "Principal", "Router",
           "StaticEndpoints", "create_app"]
