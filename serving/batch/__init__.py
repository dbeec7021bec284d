"""The OpenAI Batch API on compliant pools: durable, fair, resumable.

- :mod:`~serving.batch.records`: files, batches and line results, and their OpenAI shapes;
- :mod:`~serving.batch.store`: SQLite state and result files in ``$CORRIDOR_HOME``;
- :mod:`~serving.batch.validation`: checking an input file before any line runs;
- :mod:`~serving.batch.executor`: running lines on allowed replicas, fairly, exactly once;
- :mod:`~serving.batch.provisioning`: batch replicas placed when no allowed one is live;
- :mod:`~serving.batch.service`: the API's operations, scoped to the caller's tenant;
- :mod:`~serving.batch.api`: the HTTP routes (``/v1/files``, ``/v1/batches``).

Attach a service to the gateway before its app starts::

    gateway.batches = BatchService.open(home, provisioner=DeploymentProvisioner(deployments, configs))
"""

# The gateway's app includes this package's router and this package uses the gateway's
# modules: load the gateway first, so that importing either package first works.
import serving.gateway  # noqa: F401  isort: skip
from serving.batch.executor import ExecutionSettings
from serving.batch.provisioning import DeploymentProvisioner, Provisioner, ProvisionRefused
from serving.batch.service import BatchService, BatchSettings
from serving.batch.store import BatchStore
from serving.batch.validation import InputLimits

__all__ = ["BatchService", "BatchSettings", "BatchStore", "DeploymentProvisioner",
           "ExecutionSettings", "InputLimits", "ProvisionRefused", "Provisioner"]
