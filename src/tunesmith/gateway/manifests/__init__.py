"""Read Seldon Core v2 manifests into typed, frozen dataclasses and check them as Seldon does.

A manifests folder holds YAML files, each with one or more documents (``---``) of the kinds
``Model``, ``Server``, ``ServerConfig``, ``Pipeline`` and ``Experiment`` (``apiVersion:
mlops.seldon.io/v1alpha1``). :func:`load` reads them and checks each document in the order a real
installation would:

1. ``apiVersion``, ``kind`` and ``metadata.name``.
2. Unknown fields. The Kubernetes API server prunes them silently and ``seldon ... load`` refuses
   them (``operator/pkg/cli/scheduler.go: unMarshallYamlStrict``, ``json: unknown field "input"``);
   the gateway refuses them too, because a misspelt key (``input:`` for ``inputs:``) otherwise
   changes what a pipeline does without a word.
3. The CRD's OpenAPI schema (types, enums, required keys), from the CRD files in ``crd_dir``.
4. Seldon's own checks, with Seldon's messages: the scheduler's pipeline checks
   (``scheduler/pkg/store/pipeline/validate.go``), the operator's model conversion
   (``operator/apis/mlops/v1alpha1/model_types.go: AsSchedulerModel``) and the experiment checks
   (``scheduler/pkg/store/experiment/validate.go``).
5. What the local gateway cannot do: each field of each kind is listed in :data:`FIELDS` as
   implemented, ignored (with a logged note) or refused (with a :class:`ManifestError`).

Then the manifests are checked together: one name per kind, a Model for every pipeline step, a
Server for every Model (Seldon's scheduler filters), Seldon's experiment rules, and for the local
gateway the Experiments it can serve (``cross_checks._check_experiments_served``).

Every error is a :class:`ManifestError` that names the file, the field and the problem::

    pipelines.yaml: spec.steps[1]: json: unknown field "input"

Where each part lives:

- :mod:`.loader`: :func:`load` and :func:`loads`, reading the YAML, steps 1 to 5 for each document.
- :mod:`.kinds`: the dataclasses, the constants, :class:`ManifestError` and the typed spec readers.
- :mod:`.crds`: Seldon's CRD files, the unknown-field check and the schema check (steps 2 and 3).
- :mod:`.fields`: :data:`FIELDS`, the refused and ignored fields, unknown fields without the CRDs.
- :mod:`.pipelines`: the Pipeline builder and :data:`PIPELINE_CHECKS`.
- :mod:`.builders`: the Model, Server, ServerConfig and Experiment builders, memory quantities, scaling.
- :mod:`.cross_checks`: the checks across manifests, placing Models on Servers, :func:`check_tensors`.
"""

from tunesmith.gateway.manifests.builders import quantity_bytes
from tunesmith.gateway.manifests.crds import default_crd_dir
from tunesmith.gateway.manifests.cross_checks import STOCK_SERVER_CONFIGS, check_tensors
from tunesmith.gateway.manifests.fields import FIELDS, field_status
from tunesmith.gateway.manifests.kinds import (
    API_VERSION,
    CRD_FILES,
    DEFAULT_CAPABILITIES,
    DEFAULT_SERVER,
    JOIN_TYPES,
    KINDS,
    NAME_PATTERN,
    Candidate,
    Experiment,
    ManifestError,
    Manifests,
    Mirror,
    Model,
    Output,
    Pipeline,
    Server,
    ServerConfig,
    Step,
)
from tunesmith.gateway.manifests.loader import load, loads
from tunesmith.gateway.manifests.pipelines import PIPELINE_CHECKS, normalise_reference

__all__ = [
    # reading
    "load",
    "loads",
    "default_crd_dir",
    "ManifestError",
    # the manifests as data
    "Manifests",
    "Pipeline",
    "Step",
    "Output",
    "Model",
    "Server",
    "ServerConfig",
    "Experiment",
    "Candidate",
    "Mirror",
    # Seldon's constants
    "API_VERSION",
    "KINDS",
    "CRD_FILES",
    "JOIN_TYPES",
    "NAME_PATTERN",
    "DEFAULT_SERVER",
    "DEFAULT_CAPABILITIES",
    "STOCK_SERVER_CONFIGS",
    # what the local gateway does with each field
    "FIELDS",
    "field_status",
    # checks and conversions other modules use
    "PIPELINE_CHECKS",
    "normalise_reference",
    "quantity_bytes",
    "check_tensors",
]
