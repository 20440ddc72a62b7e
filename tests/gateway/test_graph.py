"""The pipeline executor on Seldon's own sample pipelines, with small fake models.

The pipelines are ``samples/pipelines/*.yaml`` of SeldonIO/seldon-core (v2); the fake models do
what the samples' models do: ``tfsimple`` is Triton's "simple" model (OUTPUT0 = INPUT0 + INPUT1,
OUTPUT1 = INPUT0 - INPUT1), ``add10``/``mul10`` add or multiply INPUT by 10 into OUTPUT, and
``conditional`` returns OUTPUT0 (INPUT0) when CHOICE is 0 and OUTPUT1 (INPUT1) otherwise.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import yaml
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput

from tunesmith.gateway import graph, manifests
from tunesmith.gateway.graph import InspectError, NoOutput, NoOutputDefined, RunStore, StepFailed, execute, inspect


def pipeline(text: str) -> manifests.Pipeline:
    """A Pipeline from YAML, with a Model manifest for each of its steps."""
    doc = yaml.safe_load(text)
    models = [
        {"apiVersion": manifests.API_VERSION, "kind": "Model", "metadata": {"name": s["name"]}, "spec": {"storageUri": "/m"}}
        for s in doc["spec"]["steps"]
    ]
    return manifests.loads(yaml.safe_dump_all([doc, *models])).pipelines[doc["metadata"]["name"]]


def tensor(name: str, values: list, kind=RequestInput, datatype: str = "INT32"):
    return kind(name=name, shape=[len(values)], datatype=datatype, data=values)


def request(**tensors: list) -> InferenceRequest:
    return InferenceRequest(inputs=[tensor(name, values) for name, values in tensors.items()])


def values(message, name: str) -> list:
    found = [t for t in graph.tensors_of(message) if t.name == name]
    assert len(found) == 1, f"{name} in {[t.name for t in graph.tensors_of(message)]}"
    return list(found[0].data)


def names(message) -> list[str]:
    return [t.name for t in graph.tensors_of(message)]


class ModelError(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


class Models:
    """Fake models by name; ``delays`` slows some down; ``calls`` lists what was called, in order."""

    def __init__(self, delays: dict[str, float] | None = None, fail: dict[str, str] | None = None):
        self.delays = delays or {}
        self.fail = fail or {}
        self.calls: list[str] = []
        self.requests: dict[str, InferenceRequest] = {}

    async def __call__(self, name: str, req: InferenceRequest) -> InferenceResponse:
        self.calls.append(name)
        self.requests[name] = req
        await asyncio.sleep(self.delays.get(name, 0))
        if name in self.fail:
            raise ModelError(400, self.fail[name])
        family = name.rstrip("0123456789") if name.startswith("tfsimple") else name
        outputs = getattr(self, family.replace("-", "_"))(req)
        return InferenceResponse(model_name=name, outputs=outputs)

    @staticmethod
    def _in(req: InferenceRequest, name: str) -> list:
        return values(req, name)

    def tfsimple(self, req):
        a, b = self._in(req, "INPUT0"), self._in(req, "INPUT1")
        return [
            tensor("OUTPUT0", [x + y for x, y in zip(a, b)], ResponseOutput),
            tensor("OUTPUT1", [x - y for x, y in zip(a, b)], ResponseOutput),
        ]

    def add10(self, req):
        return [tensor("OUTPUT", [x + 10 for x in self._in(req, "INPUT")], ResponseOutput)]

    def mul10(self, req):
        return [tensor("OUTPUT", [x * 10 for x in self._in(req, "INPUT")], ResponseOutput)]

    def conditional(self, req):
        if self._in(req, "CHOICE")[0] == 0:
            return [tensor("OUTPUT0", self._in(req, "INPUT0"), ResponseOutput)]
        return [tensor("OUTPUT1", self._in(req, "INPUT1"), ResponseOutput)]

    def detector(self, req):
        return [tensor("is_outlier", [0], ResponseOutput)]

    def source_a(self, req):
        return [tensor("A", [1], ResponseOutput), tensor("SHARED", [1], ResponseOutput)]

    def source_b(self, req):
        return [tensor("B", [2], ResponseOutput), tensor("SHARED", [2], ResponseOutput)]

    def sink(self, req):
        return [tensor("SEEN", [len(req.inputs)], ResponseOutput)]


def run(coroutine):
    return asyncio.run(coroutine)


TFSIMPLES = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: tfsimples}
spec:
  steps:
    - name: tfsimple1
    - name: tfsimple2
      inputs: [tfsimple1]
      tensorMap:
        tfsimple1.outputs.OUTPUT0: INPUT0
        tfsimple1.outputs.OUTPUT1: INPUT1
  output:
    steps: [tfsimple2]
"""


def test_chain_with_tensor_map():
    models = Models()
    reply, record = run(execute(pipeline(TFSIMPLES), request(INPUT0=[1, 2], INPUT1=[3, 4]), models, request_id="r1"))
    assert models.calls == ["tfsimple1", "tfsimple2"]
    assert names(models.requests["tfsimple2"]) == ["INPUT0", "INPUT1"]
    assert values(models.requests["tfsimple2"], "INPUT0") == [4, 6]
    assert values(reply, "OUTPUT0") == [2, 4] and values(reply, "OUTPUT1") == [6, 8]  # 2 * INPUT0, 2 * INPUT1
    assert reply.model_name == ""
    assert record.route == [":tfsimple1_1:", ":tfsimple2_1:"]
    assert record.request_id == "r1" and record.pipeline == "tfsimples" and record.version == 1


def test_the_next_request_drops_requested_outputs_and_keeps_id_and_parameters():
    models = Models()
    req = request(INPUT0=[1], INPUT1=[1])
    req.id, req.outputs = "abc", [{"name": "OUTPUT0"}]
    run(execute(pipeline(TFSIMPLES), req, models, request_id="r"))
    first = models.requests["tfsimple1"]
    assert first.outputs is None and first.id == "abc"


JOIN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: join}
spec:
  steps:
    - name: tfsimple1
    - name: tfsimple2
    - name: tfsimple3
      inputs: [tfsimple1.outputs.OUTPUT0, tfsimple2.outputs.OUTPUT1]
      tensorMap:
        tfsimple1.outputs.OUTPUT0: INPUT0
        tfsimple2.outputs.OUTPUT1: INPUT1
  output:
    steps: [tfsimple3]
"""


def test_inner_join_waits_for_every_source():
    models = Models(delays={"tfsimple2": 0.05})
    reply, _ = run(execute(pipeline(JOIN), request(INPUT0=[5], INPUT1=[2]), models, request_id="r"))
    assert names(models.requests["tfsimple3"]) == ["INPUT0", "INPUT1"]  # declared order, not arrival order
    assert values(models.requests["tfsimple3"], "INPUT0") == [7]  # tfsimple1's OUTPUT0 = 5 + 2
    assert values(models.requests["tfsimple3"], "INPUT1") == [3]  # tfsimple2's OUTPUT1 = 5 - 2
    assert values(reply, "OUTPUT0") == [10]


def two_sources(join_type: str) -> str:
    return f"""
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {{name: joins}}
spec:
  steps:
    - name: source-a
    - name: source-b
    - name: sink
      inputs: [source-a.outputs.A, source-b.outputs.B]
      inputsJoinType: {join_type}
  output:
    steps: [sink]
"""


def test_outer_join_with_an_absent_source_does_not_wait_for_the_window():
    models = Models()
    absent_b = two_sources("outer").replace("source-b.outputs.B", "source-b.outputs.MISSING")  # B is filtered out
    started = time.monotonic()
    reply, _ = run(execute(pipeline(absent_b), request(X=[0]), models, request_id="r"))
    assert time.monotonic() - started < 2  # the join window is 60 s
    assert names(models.requests["sink"]) == ["A"]
    assert values(reply, "SEEN") == [1]


def test_outer_join_merges_what_arrived_within_the_window():
    models = Models(delays={"source-b": 0.02})
    reply, _ = run(execute(pipeline(two_sources("outer")), request(X=[0]), models, request_id="r"))
    assert names(models.requests["sink"]) == ["A", "B"]


def test_outer_join_stops_waiting_when_the_window_closes():
    models = Models(delays={"source-b": 0.5})
    reply, record = run(execute(pipeline(two_sources("outer")), request(X=[0]), models, request_id="r", window_s=0.05))
    assert names(models.requests["sink"]) == ["A"]  # the sink ran before B, 0.5 s late, could arrive


def test_any_join_takes_the_first_source_to_arrive():
    models = Models(delays={"source-a": 0.1})
    reply, _ = run(execute(pipeline(two_sources("any")), request(X=[0]), models, request_id="r"))
    assert names(models.requests["sink"]) == ["B"]


CONDITIONAL = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: tfsimple-conditional}
spec:
  steps:
  - name: conditional
  - name: mul10
    inputs: [conditional.outputs.OUTPUT0]
    tensorMap: {conditional.outputs.OUTPUT0: INPUT}
  - name: add10
    inputs: [conditional.outputs.OUTPUT1]
    tensorMap: {conditional.outputs.OUTPUT1: INPUT}
  output:
    steps: [mul10, add10]
    stepsJoin: any
"""


@pytest.mark.parametrize("choice, branch, expected", [(0, "mul10", [10, 20]), (1, "add10", [13, 14])])
def test_conditional_routing_runs_one_branch(choice, branch, expected):
    async def scenario():
        models = Models()
        req = request(CHOICE=[choice], INPUT0=[1, 2], INPUT1=[3, 4])
        reply, record = await execute(pipeline(CONDITIONAL), req, models, request_id="r")
        await record.settled()
        return models, reply, record

    models, reply, record = run(scenario())
    assert values(reply, "OUTPUT") == expected
    assert sorted(models.calls) == sorted(["conditional", branch])
    assert record.route == [":conditional_1:", f":{branch}_1:"]


TRIGGER_JOINS = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: trigger-joins}
spec:
  steps:
  - name: mul10
    inputs: [trigger-joins.inputs.INPUT]
    triggers: [trigger-joins.inputs.ok1, trigger-joins.inputs.ok2]
    triggersJoinType: any
  - name: add10
    inputs: [trigger-joins.inputs.INPUT]
    triggers: [trigger-joins.inputs.ok3]
  output:
    steps: [mul10, add10]
    stepsJoin: any
"""


@pytest.mark.parametrize(
    "trigger, model, expected", [("ok1", "mul10", [10]), ("ok2", "mul10", [10]), ("ok3", "add10", [11])]
)
def test_triggers_gate_a_step_and_their_data_is_never_passed(trigger, model, expected):
    async def scenario():
        models = Models()
        req = InferenceRequest(inputs=[tensor("INPUT", [1]), tensor(trigger, [1])])
        reply, record = await execute(pipeline(TRIGGER_JOINS), req, models, request_id="r")
        await record.settled()
        return models, reply

    models, reply = run(scenario())
    assert models.calls == [model]
    assert names(models.requests[model]) == ["INPUT"]
    assert values(reply, "OUTPUT") == expected


PIPELINE_INPUTS = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: pipeline-inputs}
spec:
  steps:
  - name: mul10
    inputs: [pipeline-inputs.inputs.INPUT0]
    tensorMap: {pipeline-inputs.inputs.INPUT0: INPUT}
  - name: add10
    inputs: [pipeline-inputs.inputs.INPUT1]
    tensorMap: {pipeline-inputs.inputs.INPUT1: INPUT}
  output:
    steps: [mul10, add10]
"""


def test_joins_keep_duplicate_tensor_names():
    reply, _ = run(execute(pipeline(PIPELINE_INPUTS), request(INPUT0=[1], INPUT1=[2]), Models(), request_id="r"))
    assert names(reply) == ["OUTPUT", "OUTPUT"]
    assert [list(t.data) for t in reply.outputs] == [[10], [12]]


def test_grouping_quirk_a_whole_topic_and_one_of_its_tensors_means_that_tensor_only():
    text = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: quirk}
spec:
  steps:
  - name: tfsimple1
  - name: sink
    inputs: [tfsimple1, tfsimple1.outputs.OUTPUT1]
  output: {steps: [sink]}
"""
    models = Models()
    run(execute(pipeline(text), request(INPUT0=[1], INPUT1=[1]), models, request_id="r"))
    assert names(models.requests["sink"]) == ["OUTPUT1"]


def test_a_tensor_map_key_without_inputs_or_outputs_never_matches():
    text = TFSIMPLES.replace("tfsimple1.outputs.OUTPUT1: INPUT1", "tfsimple1.OUTPUT1: INPUT1")
    models = Models()
    with pytest.raises(StepFailed):  # tfsimple2 gets OUTPUT1 unrenamed, so it has no INPUT1
        run(execute(pipeline(text), request(INPUT0=[1], INPUT1=[1]), models, request_id="r"))
    assert names(models.requests["tfsimple2"]) == ["INPUT0", "OUTPUT1"]


def test_a_failed_step_is_the_reply_with_seldons_message():
    models = Models(fail={"tfsimple1": "unexpected shape for input 'INPUT0'"})
    with pytest.raises(StepFailed) as caught:
        run(execute(pipeline(TFSIMPLES), request(INPUT0=[1], INPUT1=[1]), models, request_id="r"))
    failure = caught.value
    assert str(failure) == failure.message == "tfsimple1 : unexpected shape for input 'INPUT0'"
    assert failure.step == "tfsimple1" and failure.status == 400
    assert models.calls == ["tfsimple1"]  # the steps after it never run
    errors = [r for r in failure.run.records if r.topic == graph.ERRORS_TOPIC]
    assert errors[0].value == "unexpected shape for input 'INPUT0'"
    assert errors[0].headers[graph.ERROR_HEADER] == ["tfsimple1"]


def test_an_exception_without_a_status_is_a_500():
    async def broken(name, req):
        raise RuntimeError("connection refused")

    with pytest.raises(StepFailed) as caught:
        run(execute(pipeline(TFSIMPLES), request(INPUT0=[1], INPUT1=[1]), broken, request_id="r"))
    assert caught.value.status == 500 and caught.value.message == "tfsimple1 : connection refused"


WITH_DETECTOR = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: with-detector}
spec:
  steps:
  - name: add10
  - name: detector
  output: {steps: [add10]}
"""


def test_a_failure_off_the_output_path_still_fails_the_call_when_it_comes_first():
    models = Models(delays={"add10": 0.05}, fail={"detector": "drift detector crashed"})
    with pytest.raises(StepFailed, match="detector : drift detector crashed"):
        run(execute(pipeline(WITH_DETECTOR), request(INPUT=[1]), models, request_id="r"))


def test_a_failure_after_the_reply_is_only_recorded():
    async def scenario():
        models = Models(delays={"detector": 0.05}, fail={"detector": "late"})
        reply, record = await execute(pipeline(WITH_DETECTOR), request(INPUT=[1]), models, request_id="r")
        await record.settled()
        return reply, record

    reply, record = run(scenario())
    assert values(reply, "OUTPUT") == [11]
    assert [r.value for r in record.records if r.topic == graph.ERRORS_TOPIC] == ["late"]


def test_a_step_off_the_output_path_keeps_running_after_the_reply_and_is_recorded():
    async def scenario():
        models = Models(delays={"detector": 0.05})
        reply, record = await execute(pipeline(WITH_DETECTOR), request(INPUT=[1]), models, request_id="r")
        topics_at_reply = {r.topic for r in record.records}
        await record.settled()
        return topics_at_reply, record

    topics_at_reply, record = run(scenario())
    outputs = "seldon.default.model.detector.outputs"
    assert outputs not in topics_at_reply
    assert outputs in {r.topic for r in record.records} and record.finished


def test_no_output_when_every_output_source_is_absent_names_them():
    text = CONDITIONAL.replace("stepsJoin: any", "stepsJoin: inner")
    started = time.monotonic()
    with pytest.raises(NoOutput) as caught:
        run(execute(pipeline(text), request(CHOICE=[0], INPUT0=[1], INPUT1=[1]), Models(), request_id="r"))
    assert time.monotonic() - started < 2
    assert caught.value.absent == ["add10"]
    assert str(caught.value) == "pipeline tfsimple-conditional: no output produced (absent: add10)"


def test_a_pipeline_without_output_cannot_be_called_but_its_steps_run():
    text = TFSIMPLES.replace("  output:\n    steps: [tfsimple2]\n", "")

    async def scenario():
        models = Models()
        with pytest.raises(NoOutputDefined, match="pipeline tfsimples has no output") as caught:
            await execute(pipeline(text), request(INPUT0=[1], INPUT1=[1]), models, request_id="r")
        await caught.value.run.settled()
        return models

    assert run(scenario()).calls == ["tfsimple1", "tfsimple2"]


def test_an_empty_output_echoes_the_pipeline_inputs():
    text = TFSIMPLES.replace("  output:\n    steps: [tfsimple2]\n", "  output: {}\n")
    reply, _ = run(execute(pipeline(text), request(INPUT0=[1], INPUT1=[2]), Models(), request_id="r"))
    assert names(reply) == ["INPUT0", "INPUT1"] and isinstance(reply.outputs[0], ResponseOutput)


def test_records_carry_the_callers_x_headers_and_the_pipeline():
    _, record = run(
        execute(pipeline(TFSIMPLES), request(INPUT0=[1], INPUT1=[1]), Models(), request_id="r7",
                headers={"X-Foo": "bar", "Authorization": "secret"}, version=3)
    )  # fmt: skip
    headers = record.records[-1].headers
    assert headers["x-foo"] == ["bar"] and "authorization" not in headers
    assert headers["pipeline"] == ["tfsimples"] and headers["x-request-id"] == ["r7"]
    assert headers["x-pipeline-version"] == ["3"]
    assert headers["x-seldon-route"] == [":tfsimple1_1:", ":tfsimple2_1:"]


def test_inspect_expressions():
    _, record = run(execute(pipeline(TFSIMPLES), request(INPUT0=[1], INPUT1=[2]), Models(), request_id="r"))

    everything = inspect(record, "tfsimples")
    assert [t["name"] for t in everything["topics"]] == [
        "seldon.default.model.tfsimple1.inputs",
        "seldon.default.model.tfsimple1.outputs",
        "seldon.default.model.tfsimple2.inputs",
        "seldon.default.model.tfsimple2.outputs",
        "seldon.default.pipeline.tfsimples.inputs",
        "seldon.default.pipeline.tfsimples.outputs",
        "seldon.default.errors.errors",
    ]
    assert everything["topics"][-1]["msgs"] == []

    step = inspect(record, "tfsimples.tfsimple2")
    assert [t["name"] for t in step["topics"]] == ["seldon.default.model.tfsimple2.inputs", "seldon.default.model.tfsimple2.outputs"]
    received = step["topics"][0]["msgs"][0]["value"]
    assert [t["name"] for t in received["inputs"]] == ["INPUT0", "INPUT1"]

    outputs = inspect(record, "tfsimples.tfsimple1.outputs")
    (message,) = outputs["topics"][0]["msgs"]
    assert message["key"] == "r" and message["headers"]["pipeline"] == ["tfsimples"]
    assert [t["name"] for t in message["value"]["outputs"]] == ["OUTPUT0", "OUTPUT1"]

    one = inspect(record, "tfsimples.tfsimple1.outputs.OUTPUT1")
    assert one["topics"][0]["msgs"][0]["value"] == {"name": "OUTPUT1", "shape": [1], "datatype": "INT32", "data": [-1]}

    assert inspect(record, "tfsimples.outputs")["topics"][0]["name"] == "seldon.default.pipeline.tfsimples.outputs"


@pytest.mark.parametrize(
    "expression, message",
    [
        ("tfsimples.nope", "Failed to find step with name nope in pipeline tfsimples"),
        ("tfsimples.tfsimple1.sideways", "Need to specify either inputs or outputs for a step"),
        ("tfsimples.tfsimple1.outputs.OUTPUT0.x", "Bad pipeline specifier tfsimples.tfsimple1.outputs.OUTPUT0.x"),
        ("other", "pipeline other not found"),
    ],
)
def test_inspect_refuses_what_the_seldon_cli_refuses(expression, message):
    _, record = run(execute(pipeline(TFSIMPLES), request(INPUT0=[1], INPUT1=[2]), Models(), request_id="r"))
    with pytest.raises(InspectError) as caught:
        inspect(record, expression)
    assert str(caught.value) == message


def test_run_store_keeps_the_last_runs_of_each_pipeline():
    store = RunStore(limit=3)
    for i in range(5):
        store.add(graph.Run(request_id=f"r{i}", pipeline="p", version=1))
    store.add(graph.Run(request_id="q0", pipeline="q", version=1))
    assert [r.request_id for r in store.runs("p")] == ["r2", "r3", "r4"]
    assert store.get("p").request_id == "r4"
    assert store.get("p", "r3").request_id == "r3"
    assert store.get("p", "r0") is None and store.get("nobody") is None
    assert [r.request_id for r in store.runs("q")] == ["q0"]
    assert RunStore().limit == 100


def test_group_sources_keeps_first_appearance_order():
    grouped = graph.group_sources(["b.outputs.X", "a.outputs", "b.outputs.Y", "p.inputs.T"])
    assert grouped == [
        graph.Source("b.outputs", frozenset({"X", "Y"})),
        graph.Source("a.outputs", frozenset()),
        graph.Source("p.inputs", frozenset({"T"})),
    ]



def test_an_error_upstream_of_an_absent_output_is_the_reply_not_silence():
    """The output is known absent at once (``add10`` gets nothing: the conditional chose the other
    branch) while a slow step feeding nothing of the output is still running; when that step fails,
    its error is the reply, as in Seldon, not a 504 for a missing output."""
    text = CONDITIONAL.replace("stepsJoin: any", "stepsJoin: inner").replace(
        "  output:", "  - name: detector\n  output:", 1)
    models = Models(delays={"detector": 0.05}, fail={"detector": "drift detector crashed"})
    with pytest.raises(StepFailed, match="detector : drift detector crashed"):
        run(execute(pipeline(text), request(CHOICE=[0], INPUT0=[1], INPUT1=[1]), models, request_id="r"))
