"""A Pipeline spec into a :class:`Pipeline`, checked as Seldon's scheduler checks it.

The scheduler's checks (``scheduler/pkg/store/pipeline/validate.go``) run in Seldon's order, with
Seldon's messages: :data:`PIPELINE_CHECKS`, then the ``spec.input`` check of inputs from other
pipelines. A ``tensorMap`` key that can never match is logged, as Seldon silently ignores it.
"""

from __future__ import annotations

from typing import Any

from tunesmith.gateway.manifests.kinds import (
    NAME_PATTERN,
    Output,
    Pipeline,
    Step,
    _Invalid,
    _join_type,
    _required,
    _string_map,
    _strings,
    _typed,
    log,
)


def normalise_reference(pipeline: str, reference: str) -> str:
    """Seldon's ``updateInternalInputSteps`` (``scheduler/pkg/store/pipeline/utils.go``): a bare
    name is the pipeline's inputs or a step's outputs. ``""`` becomes ``".outputs"``, which the
    checks then report as empty."""
    if "." in reference:
        return reference
    return f"{reference}.inputs" if reference == pipeline else f"{reference}.outputs"


def _build_pipeline(name: str, spec: dict) -> Pipeline:
    """Convert as the scheduler does (``utils.go: CreatePipelineVersionFromProto``), then check."""
    raw_steps = _typed(spec.get("steps"), "spec.steps", "array") or []
    steps = tuple(_build_step(name, raw, f"spec.steps[{i}]") for i, raw in enumerate(raw_steps))
    _check_repeated_steps(name, steps)
    output = _build_output(name, _typed(spec.get("output"), "spec.output", "object"))
    pipeline = Pipeline(name=name, steps=steps, output=output)
    for check in PIPELINE_CHECKS:
        check(pipeline)
    _check_pipeline_input(name, _typed(spec.get("input"), "spec.input", "object"))
    _warn_unmatched_tensor_maps(pipeline)
    return pipeline


def _build_step(pipeline: str, raw: Any, where: str) -> Step:
    raw = _typed(raw, where, "object") or {}
    name = _typed(_required(raw, "name", where), f"{where}.name", "string")
    window = _typed(raw.get("joinWindowMs"), f"{where}.joinWindowMs", "integer")
    return Step(
        name=name,
        inputs=_references(pipeline, raw.get("inputs"), f"{where}.inputs"),
        tensor_map=_string_map(raw.get("tensorMap"), f"{where}.tensorMap"),
        inputs_join_type=_join_type(raw.get("inputsJoinType"), f"{where}.inputsJoinType"),
        join_window_ms=window or None,
        triggers=_references(pipeline, raw.get("triggers"), f"{where}.triggers"),
        triggers_join_type=_join_type(raw.get("triggersJoinType"), f"{where}.triggersJoinType"),
    )


def _build_output(pipeline: str, raw: dict | None) -> Output | None:
    if raw is None:
        return None
    window = _typed(raw.get("joinWindowMs"), "spec.output.joinWindowMs", "integer")
    return Output(
        steps=_references(pipeline, raw.get("steps"), "spec.output.steps"),
        steps_join=_join_type(raw.get("stepsJoin"), "spec.output.stepsJoin"),
        join_window_ms=window or None,
        tensor_map=_string_map(raw.get("tensorMap"), "spec.output.tensorMap"),
    )


def _references(pipeline: str, value: Any, where: str) -> tuple[str, ...]:
    return tuple(normalise_reference(pipeline, ref) for ref in _strings(value, where, blank_ok=True))


def _check_repeated_steps(pipeline: str, steps: tuple[Step, ...]) -> None:
    seen: set[str] = set()
    for i, step in enumerate(steps):
        if step.name in seen:
            raise _Invalid(f"spec.steps[{i}].name", f"pipeline {pipeline} has repeated step {step.name}")
        seen.add(step.name)


def _step_of(reference: str) -> str:
    return reference.split(".")[0]


def _check_pipeline_name(p: Pipeline) -> None:
    """``validate.go: checkName``; "alphanmumeric" is Seldon's spelling."""
    if not NAME_PATTERN.match(p.name):
        raise _Invalid(
            "metadata.name",
            f"pipeline {p.name} does not have a valid name - it must be alphanmumeric and cannot contain dots (.)",
        )


def _check_steps_exist(p: Pipeline) -> None:
    """``validate.go: checkStepsExist``."""
    if not p.steps:
        raise _Invalid("spec.steps", f"pipeline {p.name} has no steps defined")


def _check_step_name_not_pipeline_name(p: Pipeline) -> None:
    """``validate.go: checkStepNameNotPipelineName``: the name would make ``<name>.inputs`` ambiguous."""
    for i, step in enumerate(p.steps):
        if step.name == p.name:
            raise _Invalid(
                f"spec.steps[{i}].name",
                f"pipeline {p.name} must not have a step name with the same name as pipeline name",
            )


def _check_references(p: Pipeline, attribute: str, what: str) -> None:
    """``validate.go: checkStepInputs`` / ``checkStepTriggers``: ``<step>.(inputs|outputs)[.<tensor>]``."""
    for i, step in enumerate(p.steps):
        for j, ref in enumerate(getattr(step, attribute)):
            where = f"spec.steps[{i}].{attribute}[{j}]"
            if not ref.strip() or ref.startswith("."):
                raise _Invalid(where, f"pipeline {p.name} step {step.name} has an empty {what}")
            parts = ref.split(".")
            if len(parts) not in (2, 3) or parts[1] not in ("inputs", "outputs"):
                raise _Invalid(
                    where, f"pipeline step {what} invalid pipeline {p.name} step {step.name} input step {ref}."
                )


def _check_step_inputs(p: Pipeline) -> None:
    _check_references(p, "inputs", "input")


def _check_step_triggers(p: Pipeline) -> None:
    _check_references(p, "triggers", "trigger")


def _check_step_references_exist(p: Pipeline) -> None:
    """``validate.go: checkStepReferencesExist``. Seldon does not check triggers here (an unknown
    trigger step then crashes its cycle check); the gateway reports them like inputs."""
    names = set(p.step_names)
    for i, step in enumerate(p.steps):
        for attribute in ("inputs", "triggers"):
            for j, ref in enumerate(getattr(step, attribute)):
                if _step_of(ref) not in names and _step_of(ref) != p.name:
                    raise _Invalid(
                        f"spec.steps[{i}].{attribute}[{j}]",
                        f"pipeline {p.name} step {step.name} has input {_step_of(ref)} for step that does not exist",
                    )
    for j, ref in enumerate(p.output.steps if p.output else ()):
        if _step_of(ref) not in names:
            raise _Invalid(f"spec.output.steps[{j}]", f"pipeline {p.name} output step {_step_of(ref)} not found")


def _check_pipeline_outputs(p: Pipeline) -> None:
    """``validate.go: checkPipelineOutputs``."""
    for j, ref in enumerate(p.output.steps if p.output else ()):
        parts = ref.split(".")
        if len(parts) not in (2, 3) or parts[1] not in ("inputs", "outputs"):
            raise _Invalid(f"spec.output.steps[{j}]", f"pipeline {p.name} output specifier {ref} invalid")


def _upstream(p: Pipeline, step: Step) -> list[str]:
    """The steps a step waits for. References to the pipeline's own inputs are not edges; a
    reference to its outputs waits for the output's steps (Seldon skips it and would hang)."""
    found: list[str] = []
    for ref in step.inputs + step.triggers:
        name = _step_of(ref)
        if name != p.name:
            found.append(name)
        elif ref.split(".")[1] == "outputs" and p.output:
            found.extend(_step_of(r) for r in p.output.steps)
    return found


def _check_for_cycles(p: Pipeline) -> None:
    """``validate.go: checkForCycles``: a depth-first walk over inputs and triggers."""
    steps = {s.name: s for s in p.steps}
    checked: set[str] = set()

    def visit(name: str, visiting: set[str]) -> None:
        visiting.add(name)
        for upstream in dict.fromkeys(_upstream(p, steps[name])):
            if upstream in visiting:
                raise _Invalid("spec.steps", f"pipeline {p.name} has a cycle")
            if upstream not in checked:
                visit(upstream, visiting)
        visiting.discard(name)
        checked.add(name)

    for step in p.steps:
        if step.name not in checked:
            visit(step.name, set())


def _check_inputs_and_triggers_differ(p: Pipeline) -> None:
    """``validate.go: checkInputsAndTriggersDiffer``: a step must not read a step's data and also
    wait for it as a trigger.

    Seldon's code compares each normalised trigger (``a.outputs``) with the inputs' step names
    (``a``), so it never matches; the gateway compares step names, as the message says. The
    pipeline's own inputs are exempt: ``samples/pipelines/trigger-joins.yaml`` reads
    ``<pipeline>.inputs.INPUT`` and triggers on ``<pipeline>.inputs.ok1``.
    """
    for i, step in enumerate(p.steps):
        input_steps = {_step_of(ref) for ref in step.inputs} - {p.name}
        for j, ref in enumerate(step.triggers):
            if _step_of(ref) in input_steps:
                raise _Invalid(
                    f"spec.steps[{i}].triggers[{j}]",
                    f"pipeline {p.name} : inputs and triggers must differ, but found {_step_of(ref)} in both",
                )


PIPELINE_CHECKS = (
    _check_pipeline_name,
    _check_steps_exist,
    _check_step_name_not_pipeline_name,
    _check_step_inputs,
    _check_step_triggers,
    _check_step_references_exist,
    _check_pipeline_outputs,
    _check_for_cycles,
    _check_inputs_and_triggers_differ,
)
"""The scheduler's checks in Seldon's order (``validate.go: validate``), before the ``input`` check."""


def _normalise_external(reference: str) -> str:
    """``utils.go: updateExternalInputSteps``: ``P`` and ``P.step.S`` default to their outputs."""
    parts = reference.split(".")
    if len(parts) == 1 or (len(parts) == 3 and parts[1] == "step"):
        return f"{reference}.outputs"
    return reference


_INPUT_REASONS = {
    "empty": "At least one pipeline input must be specified",
    "blank": "Input name must not be empty",
    "name only": "A Pipeline name must also specify one of inputs, outputs or a step name",
    "prefix": "A Pipeline inputs referencing another pipeline must be <pipeineName>.(inputs|outputs|step.<stepName>)",
    "step suffix": "A pipeline step must be <pipelineName>.step.<stepName>.(inputs|outputs)",
    "too long": "The input is too long. It must be <pipelineName>.(inputs|outputs).(tensorName)? or "
    "<pipelineName>.step.<stepName>.<inputs|outputs>.<tensorName>",
}


def _external_input_problem(reference: str) -> str | None:
    """``validate.go: checkPipelineInput`` for one external input; a key of ``_INPUT_REASONS``."""
    if not reference.strip():
        return "blank"
    parts = reference.split(".")
    data = ("inputs", "outputs")
    if len(parts) == 1:
        return "name only"
    if len(parts) == 2:
        return None if parts[1] in data else "prefix"
    if len(parts) == 3:
        if parts[1] not in data + ("step",):
            return "prefix"
        return "step suffix" if parts[1] == "step" else None
    if parts[1] not in data + ("step",):
        return "prefix"
    if parts[3] not in data:
        return "step suffix"
    if parts[1] in data:
        return "prefix"
    return "too long" if len(parts) > 5 else None


def _check_pipeline_input(pipeline: str, raw: dict | None) -> None:
    """``validate.go: checkPipelineInput``, the scheduler's last check, on ``spec.input``."""
    if raw is None:
        return
    inputs = [_normalise_external(ref) for ref in _strings(raw.get("externalInputs"), "spec.input.externalInputs")]
    if not inputs:
        raise _Invalid("spec.input.externalInputs", f"pipeline {pipeline} input  is invalid. {_INPUT_REASONS['empty']}")
    for j, ref in enumerate(inputs):
        problem = _external_input_problem(ref)
        if problem:
            reason = _INPUT_REASONS[problem]
            raise _Invalid(f"spec.input.externalInputs[{j}]", f"pipeline {pipeline} input {ref} is invalid. {reason}")


def _warn_unmatched_tensor_maps(p: Pipeline) -> None:
    """A tensorMap key is ``<step>.(inputs|outputs).<tensor>``; Seldon silently ignores any other
    (``scheduler/pkg/kafka/topics.go: GetFullyQualifiedTensorMap``), so say so."""
    maps = [(f"steps {s.name}", s.tensor_map) for s in p.steps]
    maps += [("output", p.output.tensor_map)] if p.output else []
    for owner, tensor_map in maps:
        for key in tensor_map:
            parts = key.split(".")
            if len(parts) != 3 or parts[1] not in ("inputs", "outputs"):
                log.warning(
                    "pipeline %s %s: tensorMap key %r never matches: keys are <step>.(inputs|outputs).<tensor>",
                    p.name, owner, key,
                )  # fmt: skip
