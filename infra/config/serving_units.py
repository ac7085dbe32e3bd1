"""Several models on one cluster: the ``models`` list, one serving unit per model.

A deployment file serves one model with a top-level ``serving`` section (with ``workloads`` and ``autoscaling``
beside it), or several with ``models``, one entry each: its name, its ``serving`` section and, optionally, its own
``workloads`` and ``autoscaling`` (else the top-level ones, which are then the defaults of every entry). Either form
gives the same thing to the renderers: a list of ``ServingUnit``, each with its own engines, router, autoscaling and
Kubernetes namespace, so the object names (``infra/workload_names.py``) stay constants and a unit's NetworkPolicies,
Services, ScaledObjects and Pod Identity associations stay inside its namespace. GPU pools are shared by default:
each unit's roles pick their instance types from the pools no model has taken. An entry's ``gpu_pools`` dedicates
pools to it: its workers run there only (node affinity on the pool label) and no other model's do; a taint on such a
pool, which only that model's workers tolerate, keeps other workloads off too.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from infra.config.autoscaling import AutoscalingConfig
from infra.config.common import Strict
from infra.config.workloads import WorkloadsConfig
from runtime.config import Serving

# A unit's name: short enough that its instance label ``<deployment>-<unit>`` (the deployment's name is at most 40
# characters) and its default namespace ``pdstack-<unit>`` stay within Kubernetes' 63-character label value.
UNIT_NAME = r"^[a-z][a-z0-9-]{0,20}[a-z0-9]$"
NAMESPACE_PREFIX = "pdstack-"


class ModelConfig(Strict):
    """One entry of ``models``: one model served by its own engines and router."""

    name: str = Field(pattern=UNIT_NAME, description="the unit's name: its namespace and instance label derive from it")
    serving: Serving
    workloads: WorkloadsConfig | None = Field(
        default=None, description="None: the top-level workloads section, in the namespace pdstack-<name>"
    )
    autoscaling: AutoscalingConfig | None = Field(default=None, description="None: the top-level autoscaling section")
    gpu_pools: list[str] | None = Field(
        default=None,
        min_length=1,
        description="names of gpu_node_groups (or hyperpod.instance_groups) dedicated to this model; None: the pools "
        "no model has dedicated",
    )


@dataclass(frozen=True)
class ServingUnit:
    """What one serving unit renders from: a model's serving section and how its workloads are laid out.

    ``name`` is None for the one-model form (a top-level ``serving``): its objects keep the deployment's own instance
    label and namespace, exactly as before several models existed."""

    name: str | None
    instance: str  # the app.kubernetes.io/instance label (and P/D group) of every object of the unit
    serving: Serving
    workloads: WorkloadsConfig  # with the unit's namespace
    autoscaling: AutoscalingConfig
    dedicated_pools: tuple[str, ...] | None = None  # the GPU pools dedicated to the unit; None: the shared ones

    @property
    def namespace(self) -> str:
        return self.workloads.namespace

    def where(self, problem: str) -> str:
        """A problem found in this unit, said so that the reader finds the entry in the file."""
        return problem if self.name is None else f"models[{self.name}]: {problem}"


def model_unit(
    deployment_name: str, model: ModelConfig, workloads: WorkloadsConfig, autoscaling: AutoscalingConfig
) -> ServingUnit:
    """A ``models`` entry as a unit: its own workloads or the top-level ones (``workloads``, ``autoscaling``), in its
    own namespace unless its workloads name one."""
    own = model.workloads or workloads
    if model.workloads is None or "namespace" not in model.workloads.model_fields_set:
        own = own.model_copy(update={"namespace": NAMESPACE_PREFIX + model.name})
    return ServingUnit(
        name=model.name,
        instance=f"{deployment_name}-{model.name}",
        serving=model.serving,
        workloads=own,
        autoscaling=model.autoscaling or autoscaling,
        dedicated_pools=None if model.gpu_pools is None else tuple(model.gpu_pools),
    )
