"""Checks that need every manifest at once, after each document passed its own.

One Model for every pipeline step, a ServerConfig for every Server, a Server for every Model (Seldon's
scheduler filters, which also fill :attr:`Manifests.placement`), Seldon's experiment rules, and for
the local gateway the Experiments it can serve. :func:`check_tensors` adds what only the model
folders know: the output tensors each model declares.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from tunesmith.gateway.manifests.kinds import (
    _FOR_CLUSTER,
    DEFAULT_SERVER,
    Experiment,
    ManifestError,
    Manifests,
    Model,
    Pipeline,
    Server,
    _Invalid,
)


STOCK_SERVER_CONFIGS = ("mlserver", "triton")
"""The ServerConfigs a Seldon Core v2 installation brings (``operator/config/serverconfigs/``)."""


def _check_together(found: Manifests) -> None:
    _check_server_configs(found)
    _check_step_models(found)
    _place_models(found)
    _check_experiments(found)
    if not _FOR_CLUSTER.get():
        _check_experiments_served(found)


def _check_server_configs(found: Manifests) -> None:
    """A Server's ``serverConfig`` must exist; the stock ``mlserver`` one always does here (and a
    cluster has the stock ``triton`` one too)."""
    stock = STOCK_SERVER_CONFIGS if _FOR_CLUSTER.get() else (DEFAULT_SERVER,)
    for server in found.servers.values():
        config = server.server_config
        if config in found.server_configs or config in stock:
            continue
        file = found.file_of("Server", server.name)
        if config == "triton" and not _FOR_CLUSTER.get():
            why = "only MLServer runs locally"
            raise ManifestError(file, "spec.serverConfig", f"not supported by the local gateway: {why}")
        raise ManifestError(file, "spec.serverConfig", f'serverconfigs.mlops.seldon.io "{config}" not found')


def _check_step_models(found: Manifests) -> None:
    """Each step calls the Model of the same name. Seldon waits for it (``ModelsReady`` stays
    false); locally every manifest is at hand, so a missing one is a mistake."""
    for pipeline in found.pipelines.values():
        for i, step in enumerate(pipeline.steps):
            if step.name not in found.models:
                raise ManifestError(
                    found.file_of("Pipeline", pipeline.name),
                    f"spec.steps[{i}].name",
                    f"pipeline {pipeline.name} step {step.name} calls model {step.name}, "
                    "which no Model manifest defines",
                )


def _servers(found: Manifests) -> dict[str, Server]:
    """The Servers models can go to: the manifests' and the stock ``mlserver``."""
    servers = {DEFAULT_SERVER: Server(name=DEFAULT_SERVER)}
    servers.update(found.servers)
    return servers


def _place_models(found: Manifests) -> None:
    """The scheduler's filters (``scheduler/pkg/scheduler/filters/``): the pinned ``server`` if
    any, and every requirement among the server's capabilities (``serverrequirements.go``); then,
    locally, a server with at least as many replicas as the model (``scheduler.go:
    findAndUpdateToServers``; on a cluster a server may scale up, so that check is left to Seldon)."""
    servers = _servers(found)
    for model in found.models.values():
        candidates = [model.server] if model.server else list(servers)
        fits = [name for name in candidates if name in servers and _satisfies(model, servers[name])]
        if not fits:
            raise ManifestError(
                found.file_of("Model", model.name),
                "spec.server" if model.server else "spec.requirements",
                "Failed to schedule model as no matching servers are available ("
                + "; ".join(_mismatch(model, name, servers.get(name)) for name in candidates) + ")",
            )  # fmt: skip
        enough = [name for name in fits if servers[name].replicas >= model.replicas]
        if not enough and not _FOR_CLUSTER.get():
            raise ManifestError(
                found.file_of("Model", model.name), "spec.replicas",
                "Failed to schedule model as no matching server had enough suitable replicas ("
                + "; ".join(f"server {name}: {servers[name].replicas} replicas, model replicas {model.replicas}"
                            for name in fits) + ")",
            )  # fmt: skip
        found.placement[model.name] = (enough or fits)[0]


def _satisfies(model: Model, server: Server) -> bool:
    capabilities = server.effective_capabilities
    return all(r.strip() in capabilities for r in model.requirements)


def _go_list(items: Iterable[str]) -> str:
    return "[" + " ".join(items) + "]"


def _mismatch(model: Model, name: str, server: Server | None) -> str:
    """As ``ServerRequirementFilter.Description``."""
    if server is None:
        return f"server {name}: no such Server"
    return (
        f"server {name}: model requirements {_go_list(model.requirements)}, "
        f"server capabilities {_go_list(server.effective_capabilities)}"
    )


def _check_experiments(found: Manifests) -> None:
    """``scheduler/pkg/store/experiment/validate.go: validate``, in Seldon's order."""
    baselines: dict[tuple[str, str], str] = {}
    for experiment in found.experiments.values():
        file = found.file_of("Experiment", experiment.name)
        try:
            _check_experiment(experiment, baselines)
        except _Invalid as bad:
            raise ManifestError(file, bad.field, bad.message) from None
        if experiment.default:
            baselines[(experiment.resource_type, experiment.default)] = experiment.name


def _check_experiment(e: Experiment, baselines: Mapping[tuple[str, str], str]) -> None:
    if e.default and (e.resource_type, e.default) in baselines:
        raise _Invalid(
            "spec.default",
            f"Resource {e.default} already in experiment {baselines[(e.resource_type, e.default)]} as a baseline. "
            "A model or pipeline can only appear in one experiment as a baseline",
        )
    if e.default and e.default not in {c.name for c in e.candidates}:
        raise _Invalid(
            "spec.default", f"default model/pipeline {e.default} not found in experiment {e.name} candidates"
        )
    if not e.candidates and e.mirror is None:
        raise _Invalid("spec.candidates", f"experiment {e.name} has no candidates or mirror")
    names = [c.name for c in e.candidates] + ([e.mirror.name] if e.mirror else [])
    for i, name in enumerate(names):
        if name in names[:i]:
            raise _Invalid(
                "spec.mirror" if i == len(e.candidates) else f"spec.candidates[{i}]",
                f"each candidate and mirror must be unique but found resource {name} duplicated in experiment {e.name}",
            )


def _check_experiments_served(found: Manifests) -> None:
    """What the local gateway needs to serve an Experiment (:mod:`tunesmith.gateway.experiments`).

    On a cluster an Experiment whose candidates are missing waits for them (``candidatesReady:
    false``); here every manifest is at hand, so a missing one is a mistake.
    """
    stepped = {step.name for pipeline in found.pipelines.values() for step in pipeline.steps}
    for e in found.experiments.values():
        file = found.file_of("Experiment", e.name)
        pool, what = (found.pipelines, "Pipeline") if e.resource_type == "pipeline" else (found.models, "Model")
        refusal = "not supported by the local gateway: "
        if not e.candidates:
            raise ManifestError(file, "spec.candidates", refusal + f"experiment {e.name} has a mirror but no candidates: "
                                "no arm would answer the caller")
        if not any(c.weight > 0 for c in e.candidates):
            raise ManifestError(file, "spec.candidates", refusal + f"the weights of experiment {e.name} add up to 0: "
                                "no arm would answer the caller")
        for i, candidate in enumerate(e.candidates):
            if candidate.name not in pool:
                raise ManifestError(file, f"spec.candidates[{i}].name",
                                    f"experiment {e.name}: no {what} {candidate.name} in the manifests")
        if e.mirror is not None and e.mirror.name not in pool:
            raise ManifestError(file, "spec.mirror.name", f"experiment {e.name}: no {what} {e.mirror.name} in the manifests")
        if e.default and e.resource_type == "model" and e.default in stepped:
            raise ManifestError(
                file, "spec.default",
                refusal + f"pipeline steps call model {e.default}; on a cluster their calls would be split by experiment "
                f"{e.name} too, which the local pipeline executor does not do. Leave out default and call "
                f"Seldon-Model: {e.name}.experiment",
            )  # fmt: skip


# --- tensors the producing models declare -----------------------------------------------------


def check_tensors(manifests: Manifests, outputs: Mapping[str, Sequence[str]]) -> None:
    """Refuse a reference ``<step>.outputs.<tensor>`` to a tensor the step's model never returns.

    Seldon cannot know (the reference just never fires); the gateway can, for models whose
    ``model-settings.json`` declares its ``outputs``. ``outputs`` maps model name to those names;
    models missing from it are not checked.
    """
    for pipeline in manifests.pipelines.values():
        file = manifests.file_of("Pipeline", pipeline.name)
        for where, ref in _output_tensor_references(pipeline):
            step, _, tensor = ref.split(".")
            declared = outputs.get(step)
            if declared and tensor not in declared:
                raise ManifestError(
                    file, where,
                    f"pipeline {pipeline.name} refers to {ref}, but model {step} declares only the outputs "
                    f"{_go_list(declared)}",
                )  # fmt: skip


def _output_tensor_references(p: Pipeline) -> Iterator[tuple[str, str]]:
    """(field, ``<step>.outputs.<tensor>``) for every such reference and tensorMap key."""
    found: list[tuple[str, str]] = []
    for i, step in enumerate(p.steps):
        for attribute in ("inputs", "triggers"):
            found += [(f"spec.steps[{i}].{attribute}[{j}]", ref) for j, ref in enumerate(getattr(step, attribute))]
        found += [(f"spec.steps[{i}].tensorMap", key) for key in step.tensor_map]
    if p.output:
        found += [(f"spec.output.steps[{j}]", ref) for j, ref in enumerate(p.output.steps)]
        found += [("spec.output.tensorMap", key) for key in p.output.tensor_map]
    return ((where, ref) for where, ref in found if _is_output_tensor(p, ref))


def _is_output_tensor(p: Pipeline, ref: str) -> bool:
    parts = ref.split(".")
    return len(parts) == 3 and parts[1] == "outputs" and parts[0] != p.name
