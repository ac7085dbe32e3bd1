"""Where the pods pdstack runs off the GPU nodes go on a cluster: the system nodes' nodeSelector and tolerations.

InferenceCluster and ImportedCluster each expose ``system_placement`` (pdstack's system pool; on an existing cluster
the platform's nodes that ``cluster.existing.system_nodes`` names). A construct that takes only the cluster (the GPU
capacity's Cluster Autoscaler, KEDA) reads the placement from the construct that built it unless told, and refuses
pdstack's system pool on a cluster that has none: such pods would never schedule.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_eks_v2 as eks

from infra.workload_names import SYSTEM_PLACEMENT


def system_placement_for(cluster: eks.ICluster, given: dict[str, Any] | None, field: str) -> dict[str, Any]:
    """``given`` (a props' ``field``), or the placement of the InferenceCluster or ImportedCluster that built
    ``cluster`` when None; a ValueError naming ``field`` when neither says, or when pdstack's system pool is given
    for a cluster whose system nodes are others."""
    # the cluster's scope: the InferenceCluster or ImportedCluster that made it (both expose system_placement)
    known = getattr(cluster.node.scope, "system_placement", None)
    if given is None:
        if known is None:
            raise ValueError(
                f"{field}: {cluster.node.path} was built by neither InferenceCluster nor ImportedCluster; pass the "
                "nodeSelector and tolerations of the nodes its controllers run on (Deployment.system_placement)"
            )
        return dict(known)
    if known is not None and given == SYSTEM_PLACEMENT and known != SYSTEM_PLACEMENT:
        raise ValueError(
            f"{field}: {given} is pdstack's system pool, which {cluster.node.path} (an existing cluster) does not "
            f"have; its system nodes take {known} (Deployment.system_placement, or leave {field} unset)"
        )
    return dict(given)
