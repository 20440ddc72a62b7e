"""Reading and checking Seldon manifests: Seldon's own messages, in Seldon's order.

The error cases are Seldon's samples (``samples/pipelines/error-*.yaml``, ``samples/cli-tests.md``
of SeldonIO/seldon-core v2) and the cases of ``scheduler/pkg/store/pipeline/validate_test.go``,
written here as small YAML strings.
"""

from __future__ import annotations

import logging
import textwrap
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from tunesmith import paths
from tunesmith.gateway import manifests
from tunesmith.gateway.manifests import FIELDS, ManifestError, crds, load, loader, loads, pipelines

CRDS = paths.REPO.parent / "shared" / "seldon-crds"
needs_crds = pytest.mark.skipif(not CRDS.is_dir(), reason=f"the Seldon CRDs are not at {CRDS}")


@pytest.fixture(params=["crds", "builtin"])
def schemas(request, monkeypatch):
    """Run a test with the CRD files and with the built-in field list (as without them)."""
    if request.param == "crds":
        if not CRDS.is_dir():
            pytest.skip(f"the Seldon CRDs are not at {CRDS}")
    else:
        monkeypatch.setattr(loader, "default_crd_dir", lambda: None)
    return request.param


def manifest(kind: str, name: str, spec: dict | None = None, **top) -> dict:
    doc = {"apiVersion": manifests.API_VERSION, "kind": kind, "metadata": {"name": name}, **top}
    if spec is not None:
        doc["spec"] = spec
    return doc


def model(name: str, **spec) -> dict:
    return manifest("Model", name, {"storageUri": f"/models/{name}", **spec})


def with_models(text: str) -> str:
    """YAML text plus a Model for every step of its pipelines (steps call the Model of their name)."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    steps = {s["name"] for d in docs if d["kind"] == "Pipeline" for s in d["spec"].get("steps") or []}
    return yaml.safe_dump_all(docs + [model(name) for name in sorted(steps) if isinstance(name, str)])


def error(text: str, **options) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        loads(textwrap.dedent(text), file="test.yaml", **options)
    return caught.value


def pipeline_text(name: str, body: str) -> str:
    header = f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n"
    return header + textwrap.indent(textwrap.dedent(body).rstrip("\n") + "\n", "  ")


# --- the scheduler's pipeline checks, in Seldon's order ---------------------------------------

PIPELINE_ERRORS = [
    # (pipeline name, spec, field, Seldon's message)
    ("p", "steps: [{name: a}, {name: a}]", "spec.steps[1].name", "pipeline p has repeated step a"),
    ("bad.name", "steps: [{name: a}]", "metadata.name",
     "pipeline bad.name does not have a valid name - it must be alphanmumeric and cannot contain dots (.)"),
    ("triggers_join_inputs", "steps: [{name: a}]", "metadata.name",
     "pipeline triggers_join_inputs does not have a valid name - it must be alphanmumeric and cannot contain dots (.)"),
    ("p", "steps: []", "spec.steps", "pipeline p has no steps defined"),
    ("iris", "steps: [{name: iris}]\noutput: {steps: [iris]}", "spec.steps[0].name",
     "pipeline iris must not have a step name with the same name as pipeline name"),
    ("iris-pipeline", "steps:\n  - name: first\n  - name: second\n    inputs:\n      -\noutput: {steps: [iris]}",
     "spec.steps[1].inputs[0]", "pipeline iris-pipeline step second has an empty input"),
    ("p", "steps: [{name: a}, {name: b, inputs: ['']}]", "spec.steps[1].inputs[0]", "pipeline p step b has an empty input"),
    ("p", "steps: [{name: a}, {name: b, inputs: [a.sideways]}]", "spec.steps[1].inputs[0]",
     "pipeline step input invalid pipeline p step b input step a.sideways."),
    ("p", "steps: [{name: a}, {name: b, inputs: [a.outputs.t.u]}]", "spec.steps[1].inputs[0]",
     "pipeline step input invalid pipeline p step b input step a.outputs.t.u."),
    ("iris-pipeline", "steps:\n  - name: first\n  - name: second\n  - name: third\n    inputs: [first]\n"
     "    triggers:\n      -\noutput: {steps: [iris]}",
     "spec.steps[2].triggers[0]", "pipeline iris-pipeline step third has an empty trigger"),
    ("p", "steps: [{name: a}, {name: b, triggers: [a.sideways]}]", "spec.steps[1].triggers[0]",
     "pipeline step trigger invalid pipeline p step b input step a.sideways."),
    ("p", "steps: [{name: a}, {name: b, inputs: [nope.outputs]}]", "spec.steps[1].inputs[0]",
     "pipeline p step b has input nope for step that does not exist"),
    ("p", "steps: [{name: a}, {name: b, triggers: [nope]}]", "spec.steps[1].triggers[0]",
     "pipeline p step b has input nope for step that does not exist"),
    ("p", "steps: [{name: a}]\noutput: {steps: [nope]}", "spec.output.steps[0]", "pipeline p output step nope not found"),
    ("p", "steps: [{name: a}]\noutput: {steps: [p.inputs]}", "spec.output.steps[0]", "pipeline p output step p not found"),
    ("p", "steps: [{name: a}]\noutput: {steps: [a.sideways]}", "spec.output.steps[0]", "pipeline p output specifier a.sideways invalid"),
    ("p", "steps: [{name: a, inputs: [b]}, {name: b, inputs: [a]}]", "spec.steps", "pipeline p has a cycle"),
    ("p", "steps: [{name: a, inputs: [p.outputs]}]\noutput: {steps: [a]}", "spec.steps", "pipeline p has a cycle"),
    ("p", "steps: [{name: a}, {name: b, inputs: [a.outputs.x], triggers: [a.outputs.y]}]", "spec.steps[1].triggers[0]",
     "pipeline p : inputs and triggers must differ, but found a in both"),
    ("p", "steps: [{name: a}]\ninput: {externalInputs: []}", "spec.input.externalInputs",
     "pipeline p input  is invalid. At least one pipeline input must be specified"),
    ("p", "steps: [{name: a}]\ninput: {externalInputs: [q.sideways]}", "spec.input.externalInputs[0]",
     "pipeline p input q.sideways is invalid. A Pipeline inputs referencing another pipeline must be "
     "<pipeineName>.(inputs|outputs|step.<stepName>)"),
    ("p", "steps: [{name: a}]\ninput: {externalInputs: [q.step.s.sideways]}", "spec.input.externalInputs[0]",
     "pipeline p input q.step.s.sideways is invalid. A pipeline step must be <pipelineName>.step.<stepName>.(inputs|outputs)"),
    ("p", "steps: [{name: a}]\ninput: {externalInputs: [q.step.s.outputs.t.u]}", "spec.input.externalInputs[0]",
     "pipeline p input q.step.s.outputs.t.u is invalid. The input is too long. It must be "
     "<pipelineName>.(inputs|outputs).(tensorName)? or <pipelineName>.step.<stepName>.<inputs|outputs>.<tensorName>"),
]  # fmt: skip


@pytest.mark.parametrize("name, spec, field, message", PIPELINE_ERRORS, ids=[c[3][:60] for c in PIPELINE_ERRORS])
def test_pipeline_checks_give_seldons_messages(schemas, name, spec, field, message):
    failure = error(pipeline_text(name, spec))
    assert (failure.field, failure.message) == (field, message)
    assert str(failure) == f"test.yaml: {field}: {message}"


def test_external_input_reasons_that_normalisation_makes_unreachable():
    # updateExternalInputSteps runs first and turns "q" into "q.outputs" and " " into " .outputs",
    # so from a manifest Seldon never reports these two reasons; its checkPipelineInput has them.
    assert pipelines._external_input_problem("q") == "name only"
    assert pipelines._external_input_problem(" ") == "blank"
    assert pipelines._INPUT_REASONS["name only"] == "A Pipeline name must also specify one of inputs, outputs or a step name"
    assert pipelines._INPUT_REASONS["blank"] == "Input name must not be empty"
    assert pipelines._normalise_external(" ") == " .outputs"


ORDER = [
    # A pipeline that breaks two checks reports the one Seldon runs first.
    ("bad.name", "steps: [{name: a}, {name: a}]", "has repeated step a"),
    ("bad.name", "steps: [{name: bad.name}]", "does not have a valid name"),
    ("p", "steps: [{name: p, inputs: ['']}]", "must not have a step name with the same name as pipeline name"),
    ("p", "steps: [{name: a, inputs: [''], triggers: ['']}]", "has an empty input"),
    ("p", "steps: [{name: a, inputs: [nope], triggers: ['']}]", "has an empty trigger"),
    ("p", "steps: [{name: a, inputs: [nope]}]\noutput: {steps: [a.sideways]}", "for step that does not exist"),
    ("p", "steps: [{name: a, inputs: [a]}]\noutput: {steps: [a.sideways]}", "output specifier a.sideways invalid"),
    ("p", "steps: [{name: a, inputs: [b]}, {name: b, inputs: [a.outputs.x], triggers: [a]}]", "has a cycle"),
    ("p", "steps: [{name: a}, {name: b, inputs: [a], triggers: [a]}]\ninput: {externalInputs: []}", "inputs and triggers must differ"),
    ("p", "steps: [{name: a}]\nallowCycles: true\ninput: {externalInputs: []}", "At least one pipeline input must be specified"),
]  # fmt: skip


@pytest.mark.parametrize("name, spec, message", ORDER, ids=[c[2] for c in ORDER])
def test_pipeline_checks_run_in_seldons_order(name, spec, message):
    assert message in error(pipeline_text(name, spec)).message


def test_unknown_field_step_key_input(schemas):
    # samples/pipelines/error-bad-spec.yaml: `input:` where `inputs:` was meant
    failure = error(
        """\
        apiVersion: mlops.seldon.io/v1alpha1
        kind: Pipeline
        metadata:
          name: tfsimple-conditional
        spec:
          steps:
          - name: conditional
          - name: mul10
            input:
            - conditional.outputs.OUTPUT0
            tensorMap:
              conditional.outputs.OUTPUT0: INPUT
          output:
            steps: [mul10]
        """
    )
    assert (failure.field, failure.message) == ("spec.steps[1]", 'json: unknown field "input"')
    assert str(failure) == 'test.yaml: spec.steps[1]: json: unknown field "input"'


@pytest.mark.parametrize(
    "doc, field, message",
    [
        (manifest("Model", "iris", {"storagUri": "gs://seldon-models/mlserver/iris", "requirements": ["sklearn"]}),
         "spec", 'json: unknown field "storagUri"'),
        (manifest("Experiment", "e", {"candidate": [{"name": "iris", "weight": 50}]}), "spec", 'json: unknown field "candidate"'),
        (manifest("Pipeline", "p", {"steps": [{"name": "a"}], "output": {"step": ["a"]}}), "spec.output", 'json: unknown field "step"'),
        (manifest("Pipeline", "p", {"steps": [{"name": "a", "batch": {"sise": 2}}]}), "spec.steps[0].batch",
         'json: unknown field "sise"'),
        (manifest("Server", "s", {"serverConfig": "mlserver", "capability": ["x"]}), "spec", 'json: unknown field "capability"'),
        ({**model("m"), "spce": {}}, "document", 'json: unknown field "spce"'),
    ],
)  # fmt: skip
def test_unknown_fields_are_refused(schemas, doc, field, message):
    failure = error(yaml.safe_dump(doc))
    assert failure.field == field and message in failure.message


@needs_crds
@pytest.mark.parametrize(
    "doc, field, message",
    [
        (manifest("Model", "iris", {"requirements": ["sklearn"]}), "spec", "'storageUri' is a required property"),
        (manifest("Model", "iris"), "spec", "'storageUri' is a required property"),
        (manifest("Experiment", "e", {"default": "iris"}), "spec", "'candidates' is a required property"),
        (manifest("Pipeline", "p", {"steps": [{"name": "a", "inputsJoinType": "sideways"}]}), "spec.steps[0].inputsJoinType",
         "'sideways' is not one of ['inner', 'outer', 'any']"),
        (manifest("Pipeline", "p", {"steps": "a"}), "spec.steps", "'a' is not of type 'array'"),
        (model("m", memory="lots"), "spec.memory", "'lots' does not match"),
    ],
)  # fmt: skip
def test_the_crd_schema_is_checked(doc, field, message):
    failure = error(yaml.safe_dump(doc))
    assert failure.field == field and message in failure.message


@needs_crds
def test_good_manifests_validate_against_the_crds():
    docs = [
        manifest("Pipeline", "compose", {
            "steps": [
                {"name": "prompt-encoder"},
                {"name": "tune-generator", "inputs": ["prompt-encoder.outputs.header"], "inputsJoinType": "outer",
                 "triggers": ["compose.inputs.prompt"], "joinWindowMs": 500},
                {"name": "synthesizer", "inputs": ["tune-generator"], "tensorMap": {"tune-generator.outputs.abc": "abc"}},
            ],
            "output": {"steps": ["synthesizer", "tune-generator.outputs.abc"], "stepsJoin": "inner"},
            "dataflow": {"cleanTopicsOnDelete": True},
        }),
        model("prompt-encoder", requirements=["python"], memory="100Ki", replicas=1,
              parameters=[{"name": "max_prompts", "value": "8"}], server="mlserver"),
        model("tune-generator", storageUri="gs://tunesmith-workshop/models/tune-generator", artifactVersion=1),
        model("synthesizer", modelType="python", memory=1024),
        manifest("Server", "mlserver-extra", {"serverConfig": "mlserver", "extraCapabilities": ["audio"],
                                              "podSpec": {"containers": [{"name": "mlserver", "image": "x"}]}}),
        manifest("ServerConfig", "mlserver-custom", {"podSpec": {"containers": [{"name": "mlserver"}]}}),
        model("tune-generator-v2"),
        manifest("Experiment", "generators", {"default": "tune-generator-v2", "candidates": [
            {"name": "tune-generator-v2", "weight": 50}, {"name": "tune-generator", "weight": 50}]}),
    ]  # fmt: skip
    schemas = crds._crd_schemas(CRDS)
    for doc in docs:
        jsonschema.Draft7Validator(schemas[doc["kind"]]).validate(doc)
    found = loads(yaml.safe_dump_all(docs), allow_experiments=True)
    compose = found.pipelines["compose"]
    assert compose.step("tune-generator").inputs_join_type == "outer"
    assert compose.step("tune-generator").join_window_ms == 500
    assert compose.step("synthesizer").inputs == ("tune-generator.outputs",)
    assert compose.step("prompt-encoder").inputs == () and compose.output.steps_join == "inner"
    assert found.models["prompt-encoder"].memory == 102400
    assert found.models["prompt-encoder"].parameters == {"max_prompts": "8"}
    assert found.models["synthesizer"].requirements == ("python",)
    assert found.servers["mlserver-extra"].effective_capabilities[-1] == "audio"
    assert found.experiments["generators"].resource_type == "model"


def test_defaults_and_normalised_references():
    found = loads(with_models(pipeline_text("p", "steps: [{name: a}, {name: c}, {name: b, inputs: [a, p], triggers: [c.outputs.t]}]")))
    b = found.pipelines["p"].step("b")
    assert b.inputs == ("a.outputs", "p.inputs")
    assert b.inputs_join_type == "inner" and b.triggers_join_type == "inner" and b.join_window_ms is None
    assert found.pipelines["p"].output is None


# --- refused and ignored fields ---------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, field, why",
    [
        (manifest("Pipeline", "p", {"steps": [{"name": "a"}], "allowCycles": True}), "spec.allowCycles",
         FIELDS["Pipeline"]["allowCycles"]),
        (manifest("Pipeline", "p", {"steps": [{"name": "a"}, {"name": "b", "batch": {"size": 2}}]}), "spec.steps[1].batch.size",
         FIELDS["Pipeline"]["steps[].batch.size"]),
        (manifest("Pipeline", "p", {"steps": [{"name": "a"}], "input": {"externalInputs": ["q.outputs"]}}), "spec.input",
         FIELDS["Pipeline"]["input"]),
        (model("m", explainer={"type": "anchor_tabular", "modelRef": "income"}), "spec.explainer", FIELDS["Model"]["explainer"]),
        (model("m", llm={"modelRef": "gpt"}), "spec.llm", FIELDS["Model"]["llm"]),
    ],
)  # fmt: skip
def test_refused_fields_name_the_field_and_why(schemas, doc, field, why):
    failure = error(yaml.safe_dump(doc))
    assert failure.field == field
    assert failure.message == "not supported by the local gateway: " + why.removeprefix("refused: ")
    assert str(failure) == f"test.yaml: {field}: not supported by the local gateway: {why.removeprefix('refused: ')}"


@pytest.mark.parametrize(
    "doc, field, message",
    [
        (model("m", minReplicas=3), "spec.minReplicas", "not supported by the local gateway: "
         + FIELDS["Model"]["minReplicas"].removeprefix("refused: ")),
        (model("m", replicas=1, maxReplicas=2), "spec.maxReplicas", "not supported by the local gateway: "
         + FIELDS["Model"]["maxReplicas"].removeprefix("refused: ")),
        (model("m", replicas=0), "spec.replicas",
         "not supported by the local gateway: Model replicas 0: a resource scaled to zero is not served"),
        (manifest("Server", "s", {"serverConfig": "mlserver", "replicas": 2, "minReplicas": 1}), "spec.minReplicas",
         "not supported by the local gateway: " + FIELDS["Server"]["minReplicas"].removeprefix("refused: ")),
    ],
    ids=["mlm-min-3", "mlm-max-2", "mlm-0", "mls-min"],
)  # fmt: skip
def test_autoscaling_and_zero_replicas_are_refused(doc, field, message):
    failure = error(yaml.safe_dump(doc))
    assert (failure.field, failure.message) == (field, message)


def test_a_model_needs_a_server_with_as_many_replicas():
    server = manifest("Server", "s", {"serverConfig": "mlserver", "replicas": 2})
    found = loads(yaml.safe_dump_all([server, model("m", replicas=2, server="s"), model("one")]))
    assert found.models["m"].replicas == 2 and found.servers["s"].replicas == 2
    assert found.placement == {"m": "s", "one": "mlserver"}
    failure = error(yaml.safe_dump_all([server, model("m", replicas=3)]))
    assert failure.field == "spec.replicas"
    assert failure.message.startswith("Failed to schedule model as no matching server had enough suitable replicas")


def test_harmless_values_of_refused_fields_are_accepted():
    text = pipeline_text("p", "steps: [{name: a, batch: {windowMs: 100}}]\nallowCycles: false\noutput: {steps: [a]}")
    assert loads(with_models(text)).pipelines["p"].steps[0].name == "a"


def test_triton_is_refused():
    doc = manifest("Server", "triton-gpu", {"serverConfig": "triton"})
    failure = error(yaml.safe_dump(doc))
    assert (failure.field, failure.message) == ("spec.serverConfig", "not supported by the local gateway: only MLServer runs locally")


def test_experiments_are_served_unless_a_tool_refuses_them():
    docs = [model("iris"), model("iris2"), manifest("Experiment", "experiment-sample", {
        "candidates": [{"name": "iris", "weight": 50}, {"name": "iris2", "weight": 50}]})]  # fmt: skip
    assert loads(yaml.safe_dump_all(docs)).experiments["experiment-sample"].candidates[1].weight == 50
    failure = error(yaml.safe_dump_all(docs), allow_experiments=False)
    assert (failure.field, failure.message) == ("kind", "Experiment experiment-sample: experiments are not served here")


def test_ignored_fields_are_accepted_with_a_logged_note(caplog):
    docs = [model("m", schemaUri="gs://x", preloaded=True, dedicated=True, logger={"percent": 10}, secretName="s",
                  dataflow={"cleanTopicsOnDelete": True})]  # fmt: skip
    with caplog.at_level(logging.INFO, logger=manifests.__name__):
        found = loads(yaml.safe_dump_all(docs))
    assert found.models["m"].storage_uri == "/models/m"
    noted = caplog.text
    for field in ("spec.schemaUri", "spec.preloaded", "spec.dedicated", "spec.logger", "spec.secretName", "spec.dataflow.cleanTopicsOnDelete"):
        assert f"Model m: {field} is ignored by the local gateway" in noted


def test_a_tensor_map_key_that_never_matches_is_logged(caplog):
    text = pipeline_text("p", "steps: [{name: a}, {name: b, inputs: [a], tensorMap: {a.OUTPUT0: INPUT0}}]")
    with caplog.at_level(logging.WARNING, logger=manifests.__name__):
        loads(with_models(text))
    assert "tensorMap key 'a.OUTPUT0' never matches" in caplog.text


# --- the FIELDS table ---------------------------------------------------------------------------


def test_fields_values_are_implemented_ignored_or_refused_with_a_reason():
    assert set(FIELDS) == set(manifests.KINDS)
    for kind, table in FIELDS.items():
        for path in table:
            status, why = manifests.field_status(kind, path)
            assert status in ("implemented", "ignored", "refused"), (kind, path)
            assert status == "implemented" or why, f"{kind} {path}: say why"


def _camel_to_snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _dataclass_of(annotation) -> type | None:
    """The dataclass inside ``X``, ``X | None`` or ``tuple[X, ...]``."""
    if is_dataclass(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        if is_dataclass(arg):
            return arg
    return None


SHORT_NAMES = {"Model": "mlm", "Server": "mls", "ServerConfig": "mlc", "Pipeline": "mlp", "Experiment": "mlx"}
"""Seldon's short names of the kinds, as test ids (``-k "not server"`` selects by name)."""

KIND_CLASSES = {
    "Pipeline": manifests.Pipeline,
    "Model": manifests.Model,
    "Server": manifests.Server,
    "ServerConfig": manifests.ServerConfig,
    "Experiment": manifests.Experiment,
}


@pytest.mark.parametrize("kind", manifests.KINDS, ids=SHORT_NAMES.get)
def test_fields_table_matches_the_dataclasses(kind):
    """Implemented fields are dataclass attributes (camelCase -> snake_case, through nested
    dataclasses); ignored and refused ones are not; and every attribute but ``name`` is a field."""
    reached: set[tuple[type, str]] = set()
    for path, value in FIELDS[kind].items():
        implemented = value.startswith("implemented")
        cls: type | None = KIND_CLASSES[kind]
        attributes = [_camel_to_snake(part) for part in path.replace("[]", "").split(".")]
        on_the_way = []
        for attribute in attributes[:-1]:
            inner = _dataclass_of(typing.get_type_hints(cls).get(attribute))
            on_the_way.append((cls, attribute))
            cls = inner
            if cls is None:
                break
        has_it = cls is not None and attributes[-1] in typing.get_type_hints(cls)
        assert has_it == implemented, f"{kind}.{path} is {value.split(':')[0]}, and the dataclass attribute " + (
            "exists" if has_it else "is missing"
        )
        if has_it:
            reached |= {*on_the_way, (cls, attributes[-1])}
    declared: set[tuple[type, str]] = set()
    pending = [KIND_CLASSES[kind]]
    while pending:
        cls = pending.pop()
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name != "name" or cls is not KIND_CLASSES[kind]:
                declared.add((cls, f.name))
            inner = _dataclass_of(hints[f.name])
            if inner is not None and inner not in (manifests.Candidate, manifests.Mirror):
                pending.append(inner)
    assert declared - reached == set(), "dataclass attributes that FIELDS does not list as implemented"


def _crd_field_paths(schema: dict, prefix: str = "") -> set[str]:
    """Every field path below a CRD's spec, in FIELDS notation."""
    found = set()
    for key, inner in (schema.get("properties") or {}).items():
        path = f"{prefix}.{key}" if prefix else key
        found.add(path)
        if inner.get("type") == "array" and isinstance(inner.get("items"), dict):
            found |= _crd_field_paths(inner["items"], path + "[]")
        else:
            found |= _crd_field_paths(inner, path)
    return found


@needs_crds
@pytest.mark.parametrize("kind", manifests.KINDS, ids=SHORT_NAMES.get)
def test_fields_table_covers_every_crd_field(kind):
    spec = crds._crd_schemas(CRDS)[kind]["properties"]["spec"]
    crd_paths = _crd_field_paths(spec)
    for path in FIELDS[kind]:
        assert path in crd_paths, f"{kind}: {path} is not a field of the CRD"
    for path in crd_paths:
        covered = any(path == key or path.startswith(key + ".") or path.startswith(key + "[]") for key in FIELDS[kind])
        parent = any(key.startswith(path + ".") or key.startswith(path + "[]") for key in FIELDS[kind])
        assert covered or parent, f"{kind}: the CRD field {path} is not in FIELDS"


# --- Models and Servers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, field, message",
    [
        (model("id1_node"), "metadata.name",
         "Model id1_node does not have a valid name - it must be alphanumeric and not contains dots (.)"),
        (manifest("Server", "mlserver.name", {"serverConfig": "mlserver"}), "metadata.name",
         "Server mlserver.name does not have a valid name - it must be alphanumeric and not contains dots (.)"),
        (model("m", explainer={"type": "x"}, llm={"modelRef": "y"}), "spec", "Can't have both explainer and llm in model spec."),
        (model("m", memory="0.5"), "spec.memory", "Can't convert model memory quantity to bytes. 0.5"),
        (model("m", memory="100m"), "spec.memory", "Can't convert model memory quantity to bytes. 100m"),
        (model("m", replicas=1, minReplicas=2), "spec.replicas", "scaling spec is invalid: number of replicas 1 must be >= min replicas 2"),
        (model("m", minReplicas=3, maxReplicas=2), "spec.minReplicas",
         "scaling spec is invalid: min number of replicas 3 must be <= max number of replicas 2"),
        (model("m", replicas=3, maxReplicas=2), "spec.replicas", "scaling spec is invalid: number of replicas 3 must be <= max replicas 2"),
        (model("m", replicas=-1, minReplicas=2), "spec.replicas",
         "scaling spec is invalid: number of replicas -1 cannot be less than minimum replica 2"),
    ],
    ids=["mlm-name", "mls-name", "explainer-and-llm", "memory-fraction", "memory-milli", "below-min", "min-above-max",
         "above-max", "negative"],
)  # fmt: skip
def test_model_checks_give_seldons_messages(doc, field, message):
    failure = error(yaml.safe_dump(doc))
    assert (failure.field, failure.message) == (field, message)


def test_models_are_placed_where_their_requirements_fit():
    docs = [
        model("iris", requirements=["sklearn"]),
        model("old", requirements=["mlserver-1.3.4"]),
        model("pinned", server="mlserver-134"),
        manifest("Server", "mlserver-134", {"serverConfig": "mlserver", "capabilities": ["mlserver-1.3.4"]}),
    ]
    found = loads(yaml.safe_dump_all(docs))
    assert found.placement == {"iris": "mlserver", "old": "mlserver-134", "pinned": "mlserver-134"}


def test_a_model_nothing_can_host_is_not_scheduled():
    # samples/models/error-bad-capabilities.yaml
    failure = error(yaml.safe_dump(model("badcapabilities", requirements=["foobar"])))
    assert failure.field == "spec.requirements"
    assert failure.message == (
        "Failed to schedule model as no matching servers are available (server mlserver: model requirements [foobar], "
        "server capabilities [mlserver alibi-detect alibi-explain huggingface lightgbm mlflow python sklearn spark-mlib xgboost])"
    )
    failure = error(yaml.safe_dump(model("iris", server="mlserver-134")))
    assert (failure.field, failure.message) == (
        "spec.server", "Failed to schedule model as no matching servers are available (server mlserver-134: no such Server)"
    )


def test_an_unknown_config_reference_is_refused():
    failure = error(yaml.safe_dump(manifest("Server", "s", {"serverConfig": "custom"})))
    assert (failure.field, failure.message) == ("spec.serverConfig", 'serverconfigs.mlops.seldon.io "custom" not found')
    docs = [manifest("Server", "s", {"serverConfig": "custom"}), manifest("ServerConfig", "custom", {"podSpec": {"containers": []}})]
    assert loads(yaml.safe_dump_all(docs)).servers["s"].server_config == "custom"


def test_every_step_needs_a_model():
    text = pipeline_text("p", "steps: [{name: a}, {name: b}]") + "---\n" + yaml.safe_dump(model("a"))
    failure = error(text)
    assert (failure.field, failure.message) == ("spec.steps[1].name", "pipeline p step b calls model b, which no Model manifest defines")


@pytest.mark.parametrize(
    "quantity, expected",
    [(1024, 1024), ("100Ki", 102400), ("1.5Gi", 1610612736), ("2M", 2_000_000), ("2e3", 2000), ("0.5", None), ("100m", None), ("x", None)],
)
def test_quantity_bytes(quantity, expected):
    assert manifests.quantity_bytes(quantity) == expected


# --- Experiments ------------------------------------------------------------------------------


def experiment(name: str, **spec) -> dict:
    return manifest("Experiment", name, {"candidates": [], **spec})


@pytest.mark.parametrize(
    "docs, field, message",
    [
        ([experiment("e1", default="iris", candidates=[{"name": "iris", "weight": 1}]),
          experiment("e2", default="iris", candidates=[{"name": "iris", "weight": 1}])], "spec.default",
         "Resource iris already in experiment e1 as a baseline. A model or pipeline can only appear in one experiment as a baseline"),
        ([experiment("e", default="iris", candidates=[{"name": "iris2", "weight": 1}])], "spec.default",
         "default model/pipeline iris not found in experiment e candidates"),
        ([experiment("e")], "spec.candidates", "experiment e has no candidates or mirror"),
        ([experiment("e", candidates=[{"name": "iris", "weight": 1}, {"name": "iris", "weight": 1}])], "spec.candidates[1]",
         "each candidate and mirror must be unique but found resource iris duplicated in experiment e"),
        ([experiment("e", candidates=[{"name": "iris", "weight": 1}], mirror={"name": "iris", "percent": 100})], "spec.mirror",
         "each candidate and mirror must be unique but found resource iris duplicated in experiment e"),
    ],
)  # fmt: skip
def test_experiment_checks(docs, field, message):
    failure = error(yaml.safe_dump_all(docs), allow_experiments=True)
    assert (failure.field, failure.message) == (field, message)


def test_a_mirror_only_experiment_is_valid_for_a_cluster_and_refused_locally(tmp_path):
    text = yaml.safe_dump_all([model("iris2"), experiment("e", mirror={"name": "iris2", "percent": 100})])
    (tmp_path / "e.yaml").write_text(text)
    found = manifests.load(tmp_path / "e.yaml", for_cluster=True)
    assert found.experiments["e"].mirror == manifests.Mirror("iris2", 100)
    failure = error(text)
    assert failure.field == "spec.candidates" and "has a mirror but no candidates" in failure.message


# --- files, kinds and names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, field, message",
    [
        ({**model("m"), "apiVersion": "machinelearning.seldon.io/v1"}, "apiVersion",
         "'machinelearning.seldon.io/v1' is not a Seldon Core v2 resource: use mlops.seldon.io/v1alpha1"),
        ({**model("m"), "kind": "SeldonDeployment"}, "kind",
         "'SeldonDeployment' is not a Seldon Core v2 kind: use one of Model, Server, ServerConfig, Pipeline, Experiment"),
        ({**model("m"), "metadata": {}}, "metadata.name", "every manifest needs a name"),
    ],
)  # fmt: skip
def test_kind_api_version_and_name(doc, field, message):
    failure = error(yaml.safe_dump(doc))
    assert (failure.field, failure.message) == (field, message)


def test_load_reads_a_folder_and_names_each_file(tmp_path: Path):
    (tmp_path / "models.yaml").write_text(yaml.safe_dump_all([model("a"), model("b")]))
    (tmp_path / "pipeline.yml").write_text(pipeline_text("p", "steps: [{name: a}, {name: b, inputs: [a]}]\noutput: {steps: [b]}"))
    (tmp_path / "notes.txt").write_text("not a manifest")
    found = load(tmp_path)
    assert sorted(found.models) == ["a", "b"] and list(found.pipelines) == ["p"]
    assert found.source["p"] == tmp_path / "pipeline.yml" and found.file_of("Model", "b") == tmp_path / "models.yaml"
    assert found.folder == tmp_path
    assert load([tmp_path / "models.yaml"]).models.keys() == {"a", "b"}


def test_errors_in_a_multi_document_file_name_the_document(tmp_path: Path):
    (tmp_path / "models.yaml").write_text(yaml.safe_dump_all([model("a"), model("b_c")]))
    with pytest.raises(ManifestError) as caught:
        load(tmp_path)
    assert caught.value.file == f"{tmp_path / 'models.yaml'} (document 2)"


def test_a_name_is_defined_once_per_kind(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(model("iris")))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(model("iris")))
    with pytest.raises(ManifestError, match=r"b.yaml: metadata.name: Model iris is already defined in .*a.yaml"):
        load(tmp_path)


def test_yaml_errors_and_empty_folders(tmp_path: Path):
    with pytest.raises(ManifestError, match="no \\*.yaml manifests"):
        load(tmp_path)
    (tmp_path / "broken.yaml").write_text("kind: [")
    with pytest.raises(ManifestError) as caught:
        load(tmp_path)
    assert caught.value.field == "yaml"


def test_check_tensors_refuses_outputs_the_model_does_not_declare():
    text = pipeline_text("p", "steps: [{name: a}, {name: b, inputs: [a.outputs.OUTPUT9]}]\noutput: {steps: [b]}")
    found = loads(with_models(text), file="p.yaml")
    manifests.check_tensors(found, {"a": []})  # nothing declared: nothing to check
    with pytest.raises(ManifestError) as caught:
        manifests.check_tensors(found, {"a": ["OUTPUT0", "OUTPUT1"]})
    assert caught.value.field == "spec.steps[1].inputs[0]"
    assert caught.value.message == "pipeline p refers to a.outputs.OUTPUT9, but model a declares only the outputs [OUTPUT0 OUTPUT1]"


def test_a_folder_is_read_with_its_sub_folders_but_not_hidden_ones(tmp_path):
    """Stage 3 groups manifests by kind (models/, pipelines/); Jupyter's .ipynb_checkpoints/ copies are not manifests."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.yaml").write_text(
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec: {storageUri: /tmp/m}\n")
    (tmp_path / "pipelines" / ".ipynb_checkpoints").mkdir(parents=True)
    pipeline = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\nspec: {steps: [{name: m}]}\n"
    (tmp_path / "pipelines" / "p.yaml").write_text(pipeline)
    (tmp_path / "pipelines" / ".ipynb_checkpoints" / "p-checkpoint.yaml").write_text(pipeline)
    found = load(tmp_path)
    assert set(found.models) == {"m"} and set(found.pipelines) == {"p"}


def test_for_a_cluster_what_only_one_machine_refuses_is_accepted(tmp_path):
    docs = [model("m", replicas=2, maxReplicas=3), manifest("Server", "gpu", {"serverConfig": "triton"})]
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs))
    with pytest.raises(manifests.ManifestError, match="turns on autoscaling"):
        manifests.load(tmp_path)
    found = manifests.load(tmp_path, for_cluster=True)
    assert found.models["m"].replicas == 2 and found.servers["gpu"].server_config == "triton"
    with pytest.raises(manifests.ManifestError, match="turns on autoscaling"):  # the option lasts one load only
        manifests.load(tmp_path)
