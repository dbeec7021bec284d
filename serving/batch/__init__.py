"""The OpenAI Batch API's domain on compliant pools: durable, fair, resumable.

- :mod:`~serving.batch.records`: files, batches and line results, and their OpenAI shapes;
- :mod:`~serving.batch.storage`: what the API keeps durably (one protocol, two backends);
- :mod:`~serving.batch.store`: SQLite state and result files in ``$CORRIDOR_HOME`` (the default),
  and :func:`~serving.batch.store.open_batch_store`, which opens it or its PostgreSQL twin
  :mod:`~serving.batch.pg_store` (file bytes in the database, shared by gateway processes);
- :mod:`~serving.batch.validation`: checking an input file before any line runs;
- :mod:`~serving.batch.executor`: running lines on allowed replicas, fairly, exactly once;
- :mod:`~serving.batch.runs`: a running batch's in-memory state, and the executor's settings;
- :mod:`~serving.batch.lifecycle`: validating a batch's input and writing its result files;
- :mod:`~serving.batch.replicas`, :mod:`~serving.batch.provisioning`: batch replicas placed
  when no allowed one is live, released when idle;
- :mod:`~serving.batch.service`: the API's operations, scoped to the caller's tenant;
- :mod:`~serving.batch.ports`: what it uses of the serving layer (router, upstream, ledger);
- :mod:`~serving.batch.errors`: its refusals.

It imports no HTTP module: the gateway's :mod:`serving.gateway.batch_api` serves it and
translates its errors. Attach a service to the gateway before its app starts::

    gateway.batches = BatchService.open(home, provisioner=DeploymentProvisioner(deployments, configs))
"""

from serving.batch.errors import (BatchConflict, BatchError, BatchForbidden, BatchNotFound,
                                  FileTooLarge, InvalidBatchRequest)
from serving.batch.ports import BatchPorts
from serving.batch.provisioning import DeploymentProvisioner, Provisioner, ProvisionRefused
from serving.batch.runs import ExecutionSettings
from serving.batch.service import BatchService, BatchSettings
from serving.batch.store import BatchStore
from serving.batch.validation import InputLimits

__all__ = ["BatchConflict", "BatchError", "BatchForbidden", "BatchNotFound", "BatchPorts",
           "BatchService", "BatchSettings", "BatchStore", "DeploymentProvisioner",
           "ExecutionSettings", "FileTooLarge", "InputLimits", "InvalidBatchRequest",
           "ProvisionRefused", "Provisioner"]
