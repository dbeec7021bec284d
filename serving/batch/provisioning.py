"""Batch replicas: a replica placed for batch work when no live replica may take it.

The executor asks a :class:`Provisioner` for a replica of the batch's model
for the batch's audience (tenant, marking, data flags) when the rulebook
allows pools but none has a live replica of that model. The mechanism is the
one on-demand replicas use too, in :mod:`serving.provisioning`; these names
stay importable from here.
"""

from serving.provisioning import DeploymentProvisioner, Provisioner, ProvisionRefused

__all__ = ["DeploymentProvisioner", "ProvisionRefused", "Provisioner"]
