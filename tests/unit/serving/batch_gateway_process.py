"""A gateway with the batch service as a process of its own, for the crash test.

``python batch_gateway_process.py HOME PORT KEYS UPSTREAM``: the default
bundle, API keys from the key store file ``KEYS``, one fr-paris
``corridor-tiny`` replica at ``UPSTREAM``, state (ledger, batches) in ``HOME``.
"""

import sys
from pathlib import Path

import uvicorn

from policies import Policy
from scheduler.ledger import Ledger
from serving.batch import BatchService
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.routing import Endpoint, Router, StaticEndpoints


def main() -> None:
    home, port, keys, upstream = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    database = sys.argv[5] if len(sys.argv) > 5 else None  # the batch store in PostgreSQL
    policy = Policy.load()
    endpoints = StaticEndpoints([Endpoint("chat-fr-r1", "corridor-tiny", "fr-paris", "FR",
                                          "node-fr-paris", upstream)])
    gateway = Gateway(policy=policy, ledger=Ledger.open(home / "ledger"),
                      auth=Authenticator(KeyStore(keys)), router=Router(policy, endpoints),
                      batches=BatchService.open(home / "state", database=database))
    uvicorn.run(create_app(gateway), host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
