"""Run a Seldon Core v2 pipeline for one request, in process, with Seldon's dataflow semantics.

Seldon runs a pipeline as Kafka Streams: every step reads *topics* (``<step>.inputs``, the V2
request a model received; ``<step>.outputs``, its V2 response; ``<pipeline>.inputs``, the
caller's request), selects and renames tensors, joins several topics into one request, calls the
model, and writes the response to the step's outputs topic
(``scheduler/data-flow/src/main/kotlin/io/seldon/dataflow/kafka/``). The pipeline's reply is the
first record on ``<pipeline>.outputs``: the output step's result, or the error of a failed step.

Here each topic is one asyncio future per request that resolves to a record (*present*) or to
None (*absent*: the step did not run, failed, or none of its tensors were wanted). A step runs as
soon as its joins can decide; nothing sleeps to wait for a record that is known never to come.
That reproduces, per request, what Seldon's windowed Kafka joins do:

* a step with no ``inputs`` reads the pipeline's inputs; references are grouped by topic
  (:func:`group_sources`, with Seldon's grouping quirk);
* tensors are filtered and renamed by ``tensorMap``, and a record with no tensor left is dropped,
  which is how conditional routing works (:func:`select`);
* ``inner`` joins wait for every source, ``outer`` joins merge whatever arrived (waiting at most
  the join window after the first arrival), ``any`` takes the first source to arrive
  (:func:`join`);
* triggers must fire too, but their tensors are never passed on;
* steps that do not feed the output keep running after the reply and are recorded.

Every record is kept in :class:`Run` for ``seldon pipeline inspect``-style queries
(:func:`inspect`), and :class:`RunStore` keeps the last runs of each pipeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from mlserver.codecs.json import encode_to_json_bytes
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput

from tunesmith.gateway.manifests import Pipeline, Step

log = logging.getLogger(__name__)

CallModel = Callable[[str, InferenceRequest], Awaitable[InferenceResponse]]
"""Call the model named by the first argument. On failure it raises; the exception's ``status``
attribute (an int, such as the upstream HTTP status) is kept in :class:`StepFailed` (500 without
one) and ``str(exc)`` is the error text, as Seldon's model gateway publishes the raw reply body."""

V2 = Union[InferenceRequest, InferenceResponse]
Tensor = Union[RequestInput, ResponseOutput]

NAMESPACE = "default"
DEFAULT_JOIN_WINDOW_S = 60.0
"""``kafka.join.window.millis`` (``scheduler/data-flow/src/main/resources/local.properties``), used
when a step's ``joinWindowMs`` is unset or 0 (``PipelineStep.kt: stepFor``)."""
MODEL_CALL_TIMEOUT_S = 120.0
"""``MODELGATEWAY_WORKER_TIMEOUT_MS`` (``scheduler/pkg/kafka/gateway/infer.go``)."""
DEADLINE_EXCEEDED = "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
"""The error text of a model call that ran out of time, as Go's gRPC client words it."""
MODEL_VERSION = 1
"""Every Model is loaded once, so it is version 1: its route entry is ``:<model>_1:``."""
ERRORS_TOPIC = f"seldon.{NAMESPACE}.errors.errors"
ERROR_HEADER = "seldon-pipeline-errors"


def topic_name(pipeline: str, reference: str) -> str:
    """The Kafka topic behind ``<name>.(inputs|outputs)``: the pipeline's own when ``name`` is the
    pipeline, otherwise the model's (``scheduler/pkg/kafka/topics.go``)."""
    name, kind = reference.split(".")[:2]
    space = "pipeline" if name == pipeline else "model"
    return f"seldon.{NAMESPACE}.{space}.{name}.{kind}"


# --- errors -----------------------------------------------------------------------------------


class StepFailed(Exception):
    """A model call failed; Seldon replies 400 (gRPC ``Unknown``) with ``"<model> : <error>"``
    (``scheduler/pkg/kafka/pipeline/kafkamanager.go: createResponseErrorPayload``).

    ``status`` is the failed call's own status, ``run`` the request's records so far.
    """

    def __init__(self, step: str, status: int, error: str, run: Run | None = None):
        self.step = step
        self.status = status
        self.error = error
        self.message = f"{step} : {error}"
        self.run = run
        super().__init__(self.message)


class NoOutput(Exception):
    """Every source of the pipeline's output is absent, so no reply will ever come (Seldon waits
    forever; the gateway answers 504 at once). ``absent`` names the output's absent steps."""

    def __init__(self, pipeline: str, absent: Sequence[str], run: Run | None = None):
        self.pipeline = pipeline
        self.absent = list(absent)
        self.run = run
        super().__init__(f"pipeline {pipeline}: no output produced (absent: {', '.join(self.absent)})")


class NoOutputDefined(Exception):
    """The pipeline has no ``output``: it cannot be called synchronously (Seldon never replies).
    Its steps still run and are recorded in ``run``."""

    def __init__(self, pipeline: str, run: Run | None = None):
        self.pipeline = pipeline
        self.run = run
        super().__init__(f"pipeline {pipeline} has no output")


# --- records ----------------------------------------------------------------------------------


@dataclass
class Record:
    """One message on a topic, as ``seldon pipeline inspect`` shows it. ``value`` is a V2 request
    (inputs topics), a V2 response (outputs topics) or an error text (errors topic)."""

    topic: str
    key: str
    headers: dict[str, list[str]]
    value: InferenceRequest | InferenceResponse | str
    at: float = field(default_factory=time.time)


@dataclass
class Run:
    """The records one request produced. ``route`` holds the ``x-seldon-route`` entries
    (``:<model>_1:``) of the steps the reply came through; the caller adds the pipeline's own.
    Records keep arriving after the reply while steps off the output path finish:
    ``await run.settled()`` waits for them."""

    request_id: str
    pipeline: str
    version: int
    steps: tuple[str, ...] = ()
    records: list[Record] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list, repr=False)

    async def settled(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)

    @property
    def finished(self) -> bool:
        return all(task.done() for task in self.tasks)


@dataclass(frozen=True)
class Message:
    """A present record inside the executor: its V2 value and the ``x-seldon-route`` so far."""

    value: V2
    route: tuple[str, ...] = ()


# --- selecting, renaming and joining tensors --------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One topic a step reads, and the tensors it wants from it (empty: all)."""

    topic: str
    tensors: frozenset[str] = frozenset()


def group_sources(references: Sequence[str]) -> list[Source]:
    """Group references by topic in order of first appearance, as ``PipelineStep.kt:
    parseSources`` does. A topic's tensor set collects the references that name a tensor, so
    ``[a, a.outputs.t1]`` wants only ``t1`` from ``a.outputs`` (Seldon's quirk)."""
    wanted: dict[str, set[str]] = {}
    for reference in references:
        parts = reference.split(".")
        wanted.setdefault(".".join(parts[:2]), set()).update(parts[2:3])
    return [Source(topic, frozenset(tensors)) for topic, tensors in wanted.items()]


def tensors_of(value: V2) -> list[Tensor]:
    return list(value.inputs) if isinstance(value, InferenceRequest) else list(value.outputs)


def select(value: V2, source: Source, tensor_map: Mapping[str, str], *, as_request: bool) -> V2 | None:
    """The wanted tensors of a record, renamed, as the next record's type; None when none is left.

    As ``StreamTransforms.kt`` (``convertToRequest``, ``filterRequest``, ``filterResponse``,
    ``convertToResponse``): a tensor is renamed by the ``tensorMap`` key
    ``<step>.(inputs|outputs).<tensor>``; ``id`` and ``parameters`` are copied; a request's
    requested ``outputs`` and a response's ``model_name`` are not. Dropping a record with no
    tensor left is ``Chainer.kt``'s "handle cases where there are no tensors we want".
    """
    kind = RequestInput if as_request else ResponseOutput
    tensors = [
        kind(
            name=tensor_map.get(f"{source.topic}.{t.name}", t.name),
            shape=t.shape,
            datatype=t.datatype,
            parameters=t.parameters,
            data=t.data,
        )
        for t in tensors_of(value)
        if not source.tensors or t.name in source.tensors
    ]
    if not tensors:
        return None
    if as_request:
        return InferenceRequest(id=value.id, parameters=value.parameters, inputs=tensors)
    return InferenceResponse(model_name="", id=value.id, parameters=value.parameters, outputs=tensors)


def merge(messages: Sequence[Message]) -> Message:
    """Join records left to right: ``id`` and ``parameters`` of the first, then every tensor,
    duplicate names included (``Joiner.kt: joinRequests`` / ``joinResponses``)."""
    left = messages[0].value
    tensors = [t for m in messages for t in tensors_of(m.value)]
    key = "inputs" if isinstance(left, InferenceRequest) else "outputs"
    route = tuple(dict.fromkeys(entry for m in messages for entry in m.route))
    return Message(left.model_copy(update={key: tensors}), route)


async def join(tasks: Sequence[asyncio.Future], join_type: str, window_s: float) -> list[Any]:
    """Wait for per-source results (a value, or None for absent) as a join of ``join_type`` needs.

    Returns one entry per source, None where absent or not arrived. ``Joiner.kt`` joins Kafka
    streams within a time window: ``join`` (inner), ``outerJoin`` within ``joinWindowMs`` (outer),
    ``outerJoin`` within 1 ms (any). For one request that comes down to:

    * ``inner``: every source; the first absent one makes the whole join absent (all None);
    * ``outer``: every source, but no longer than ``window_s`` after the first arrival;
    * ``any``: the first source to arrive, alone.

    Tasks still pending when the join has decided are cancelled.
    """
    results: list[Any] = [None] * len(tasks)
    position = {task: i for i, task in enumerate(tasks)}
    pending = set(tasks)
    loop = asyncio.get_running_loop()
    deadline = None
    try:
        while pending:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break
            arrived = sorted(position[t] for t in done if t.result() is not None)
            if join_type == "inner" and len(arrived) < len(done):
                return [None] * len(tasks)
            if join_type == "any" and arrived:
                results[arrived[0]] = tasks[arrived[0]].result()
                return results
            for i in arrived:
                results[i] = tasks[i].result()
            if join_type == "outer" and arrived and deadline is None:
                deadline = loop.time() + window_s
        return results
    finally:
        for task in pending:
            task.cancel()


# --- one request through a pipeline -----------------------------------------------------------


class _Flow:
    """The topics, tasks and records of one request."""

    def __init__(
        self, pipeline: Pipeline, call: CallModel, run: Run, headers: Mapping[str, str], window_s: float | None
    ):
        self.pipeline = pipeline
        self.call = call
        self.run = run
        self.window_s = window_s
        self.caller_headers = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-")}
        names = (pipeline.name,) + pipeline.step_names
        loop = asyncio.get_running_loop()
        self.topics = {f"{name}.{kind}": loop.create_future() for name in names for kind in ("inputs", "outputs")}
        self.error: asyncio.Future[StepFailed] = loop.create_future()
        self.absent_outputs: list[str] = []

    @property
    def inputs_topic(self) -> str:
        return f"{self.pipeline.name}.inputs"

    @property
    def outputs_topic(self) -> str:
        return f"{self.pipeline.name}.outputs"

    # records and topics

    def headers(self, route: Sequence[str] = ()) -> dict[str, list[str]]:
        """Kafka headers of a record: the caller's ``x-*`` headers travel with the data
        (``convertHttpHeadersToKafkaHeaders``), plus the pipeline name and version
        (``SeldonHeaders.kt``) and the route so far."""
        headers = {key: [value] for key, value in self.caller_headers.items()}
        headers["pipeline"] = [self.pipeline.name]
        headers["x-request-id"] = [self.run.request_id]
        headers["x-pipeline-version"] = [str(self.run.version)]
        if route:
            headers["x-seldon-route"] = list(route)
        return headers

    def record(self, topic: str, headers: dict[str, list[str]], value: V2 | str) -> None:
        self.run.records.append(Record(topic=topic, key=self.run.request_id, headers=headers, value=value))

    def publish(self, reference: str, message: Message) -> None:
        self.record(topic_name(self.pipeline.name, reference), self.headers(message.route), message.value)
        self.resolve(reference, message)

    def resolve(self, reference: str, message: Message | None) -> None:
        if not self.topics[reference].done():
            self.topics[reference].set_result(message)

    async def read(self, topic: str) -> Message | None:
        """A topic's record for this request; shielded, because a cancelled reader must not
        cancel the topic for every other reader."""
        return await asyncio.shield(self.topics[topic])

    def window(self, join_window_ms: int | None) -> float:
        if self.window_s is not None:
            return self.window_s
        return join_window_ms / 1000 if join_window_ms else DEFAULT_JOIN_WINDOW_S

    # sources, triggers, steps, output

    async def source(self, source: Source, tensor_map: Mapping[str, str], as_request: bool) -> Message | None:
        message = await self.read(source.topic)
        if message is None:
            return None
        value = select(message.value, source, tensor_map, as_request=as_request)
        return None if value is None else Message(value, message.route)

    async def join_references(
        self,
        references: Sequence[str],
        join_type: str,
        window_s: float,
        tensor_map: Mapping[str, str],
        as_request: bool,
    ) -> tuple[Message | None, list[str]]:
        """The joined record of some references (None: absent), and the steps found absent."""
        sources = group_sources(references)
        tasks = [asyncio.ensure_future(self.source(s, tensor_map, as_request)) for s in sources]
        results = await join(tasks, join_type, window_s)
        present = [r for r in results if r is not None]
        absent = [s.topic.split(".")[0] for s, t in zip(sources, tasks) if _resolved_absent(t)]
        return (merge(present) if present else None), absent

    async def trigger(self, source: Source) -> bool | None:
        """A trigger fires when its record holds a wanted tensor; it is read as a response
        whatever its topic, and nothing of it is passed on (``TriggerTransforms.kt``)."""
        message = await self.read(source.topic)
        if message is None:
            return None
        fired = any(not source.tensors or t.name in source.tensors for t in tensors_of(message.value))
        return True if fired else None

    async def triggered(self, step: Step, window_s: float) -> bool | None:
        tasks = [asyncio.ensure_future(self.trigger(s)) for s in group_sources(step.triggers)]
        return True if any(await join(tasks, step.triggers_join_type, window_s)) else None

    async def fire(self, step: Step) -> Message | None:
        """The request for a step, or None when it does not run: its data join, inner-joined with
        its triggers' join, keeping the data only (``joinTriggerRequests`` returns ``left``)."""
        window_s = self.window(step.join_window_ms)
        references = step.inputs or (self.inputs_topic,)

        async def data() -> Message | None:
            joined, _ = await self.join_references(references, step.inputs_join_type, window_s, step.tensor_map, True)
            return joined

        if not step.triggers:
            return await data()
        both = [asyncio.ensure_future(data()), asyncio.ensure_future(self.triggered(step, window_s))]
        message, _ = await join(both, "inner", window_s)
        return message

    async def run_step(self, step: Step) -> None:
        try:
            message = await self.fire(step)
            if message is not None:
                await self.call_model(step, message)
        finally:
            self.resolve(f"{step.name}.inputs", None)
            self.resolve(f"{step.name}.outputs", None)

    async def call_model(self, step: Step, message: Message) -> None:
        self.publish(f"{step.name}.inputs", message)
        try:
            response = await asyncio.wait_for(self.call(step.name, message.value), MODEL_CALL_TIMEOUT_S)
        except asyncio.TimeoutError:
            self.fail(step.name, 504, DEADLINE_EXCEEDED, message.route)
            return
        except Exception as exc:  # any failure of a model call is the step's error record
            status = getattr(exc, "status", None)
            error = str(exc) or type(exc).__name__
            self.fail(step.name, status if isinstance(status, int) else 500, error, message.route)
            return
        route = message.route + (f":{step.name}_{MODEL_VERSION}:",)  # as envoy adds on each model call
        self.publish(f"{step.name}.outputs", Message(response, route))

    def fail(self, step: str, status: int, error: str, route: Sequence[str]) -> None:
        """Seldon's model gateway writes the error to the errors topic with the header
        ``seldon-pipeline-errors=<model>`` (``kafka/gateway/worker.go``); the pipeline's error step
        passes it on to ``<pipeline>.outputs``, where it can be the reply."""
        headers = {**self.headers(route), ERROR_HEADER: [step]}
        self.record(ERRORS_TOPIC, headers, error)
        self.record(topic_name(self.pipeline.name, self.outputs_topic), headers, error)
        if not self.error.done():
            self.error.set_result(StepFailed(step, status, error))

    async def run_output(self) -> None:
        """The output step: ``output.steps`` joined by ``stepsJoin`` into ``<pipeline>.outputs``,
        with ``output.tensorMap``; ``output: {}`` echoes the pipeline's inputs."""
        output = self.pipeline.output
        try:
            if output is None:
                return
            references = output.steps or (self.inputs_topic,)
            message, absent = await self.join_references(
                references, output.steps_join, self.window(output.join_window_ms), output.tensor_map, False
            )
            if message is None:
                self.absent_outputs = absent
            else:
                self.publish(self.outputs_topic, message)
        finally:
            self.resolve(self.outputs_topic, None)

    # the request

    def start(self, request: InferenceRequest) -> None:
        self.publish(self.inputs_topic, Message(request))
        coroutines = [self.run_step(step) for step in self.pipeline.steps] + [self.run_output()]
        for coroutine in coroutines:
            task = asyncio.ensure_future(coroutine)
            task.add_done_callback(_log_crash)
            self.run.tasks.append(task)

    async def reply(self) -> InferenceResponse:
        """The first of: the output record, or a step's error (Seldon's sync reply is the first
        record on ``<pipeline>.outputs``)."""
        if self.pipeline.output is None:
            raise NoOutputDefined(self.pipeline.name, self.run)
        output = self.topics[self.outputs_topic]
        await asyncio.wait({output, self.error}, return_when=asyncio.FIRST_COMPLETED)
        if self.error.done():
            failure = self.error.result()
            failure.run = self.run
            raise failure
        message = output.result()
        if message is None:
            # An output can be known absent while a step upstream of it is still running (an inner
            # join loses a source whose tensor was filtered out). If that step then fails, Seldon's
            # reply is its error, not silence: wait for the running steps before saying "no output".
            running = [task for task in self.run.tasks if not task.done()]
            if running:
                await asyncio.wait(running)
            if self.error.done():
                failure = self.error.result()
                failure.run = self.run
                raise failure
            raise NoOutput(self.pipeline.name, self.absent_outputs, self.run)
        self.run.route = list(message.route)
        return message.value.model_copy()


def _resolved_absent(task: asyncio.Future) -> bool:
    return task.done() and not task.cancelled() and task.result() is None


def _log_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("pipeline task failed", exc_info=task.exception())


async def execute(
    pipeline: Pipeline,
    request: InferenceRequest,
    call: CallModel,
    *,
    request_id: str,
    headers: Mapping[str, str] | None = None,
    window_s: float | None = None,
    version: int = 1,
) -> tuple[InferenceResponse, Run]:
    """Run ``pipeline`` on ``request`` and return its reply and records.

    Args:
        call: calls a model (the step's name) with a V2 request; see :data:`CallModel`.
        request_id: the key of every record (``x-request-id``).
        headers: the caller's headers; those starting with ``x-`` travel with every record.
        window_s: overrides every join window (seconds); default each step's ``joinWindowMs``,
            else 60 s. Only outer joins with a source still running ever wait that long.
        version: the pipeline version reported in ``x-pipeline-version``.

    The reply has ``model_name`` ``""``, as Seldon's. Steps that the reply does not need keep
    running after this returns and add to ``run.records``.

    Raises:
        StepFailed: a model call failed before the output was ready.
        NoOutput: the output's sources are all absent.
        NoOutputDefined: the pipeline has no ``output``.
        Each carries ``run``.
    """
    run = Run(request_id=request_id, pipeline=pipeline.name, version=version, steps=pipeline.step_names)
    flow = _Flow(pipeline, call, run, headers or {}, window_s)
    flow.start(request)
    return await flow.reply(), run


# --- inspect ----------------------------------------------------------------------------------


class InspectError(ValueError):
    """A bad inspect expression; the message is the Seldon CLI's (``operator/pkg/cli/kafka.go``)."""


def inspect_topics(run: Run, expression: str) -> tuple[list[str], str | None]:
    """The topics (and tensor) an expression names: ``P``, ``P.(inputs|outputs)``, ``P.S``,
    ``P.S.(inputs|outputs)``, ``P.S.(inputs|outputs).T`` (``kafka.go: createPipelineInspectTopics``)."""
    parts = expression.split(".")
    pipeline = parts[0]
    if pipeline != run.pipeline:
        raise InspectError(f"pipeline {pipeline} not found")
    if len(parts) == 1:
        topics = [topic_name(pipeline, f"{s}.{kind}") for s in run.steps for kind in ("inputs", "outputs")]
        own = [topic_name(pipeline, f"{pipeline}.{kind}") for kind in ("inputs", "outputs")]
        return topics + own + [ERRORS_TOPIC], None
    if len(parts) > 4:
        raise InspectError(f"Bad pipeline specifier {expression}")
    if len(parts) == 2 and parts[1] in ("inputs", "outputs"):
        return [topic_name(pipeline, f"{pipeline}.{parts[1]}")], None
    step = parts[1]
    if step not in run.steps:
        raise InspectError(f"Failed to find step with name {step} in pipeline {pipeline}")
    if len(parts) == 2:
        return [topic_name(pipeline, f"{step}.inputs"), topic_name(pipeline, f"{step}.outputs")], None
    if parts[2] not in ("inputs", "outputs"):
        raise InspectError("Need to specify either inputs or outputs for a step")
    return [topic_name(pipeline, f"{step}.{parts[2]}")], (parts[3] if len(parts) == 4 else None)


def inspect(run: Run, expression: str) -> dict:
    """The run's records for an expression, in the JSON shape of ``seldon pipeline inspect
    --format json -v``: ``{"topics": [{"name", "msgs": [{"headers", "key", "value"}]}]}``.
    Values are V2 JSON; with a tensor, just that tensor."""
    topics, tensor = inspect_topics(run, expression)
    return {
        "topics": [
            {"name": topic, "msgs": [_inspect_message(r, tensor) for r in run.records if r.topic == topic]}
            for topic in topics
        ]
    }


def _inspect_message(record: Record, tensor: str | None) -> dict:
    return {"headers": record.headers, "key": record.key, "value": _inspect_value(record.value, tensor)}


def _inspect_value(value: V2 | str, tensor: str | None) -> Any:
    if isinstance(value, str):
        return value
    if tensor is not None:
        matches = [t for t in tensors_of(value) if t.name == tensor]
        return _jsonable(matches[-1]) if matches else None
    return _jsonable(value)


def _jsonable(model: Any) -> Any:
    """Plain JSON data, with bytes decoded as MLServer's REST responses decode them."""
    return json.loads(encode_to_json_bytes(model.model_dump(exclude_none=True)))


class RunStore:
    """The last ``limit`` runs of each pipeline, by request id: the local stand-in for reading
    Seldon's Kafka topics back."""

    def __init__(self, limit: int = 100):
        self.limit = limit
        self._runs: dict[str, OrderedDict[str, Run]] = {}

    def add(self, run: Run) -> None:
        runs = self._runs.setdefault(run.pipeline, OrderedDict())
        runs[run.request_id] = run
        runs.move_to_end(run.request_id)
        while len(runs) > self.limit:
            runs.popitem(last=False)

    def get(self, pipeline: str, request_id: str | None = None) -> Run | None:
        """A run by request id, or the pipeline's latest run."""
        runs = self._runs.get(pipeline) or OrderedDict()
        if request_id is None:
            return next(reversed(runs.values()), None)
        return runs.get(request_id)

    def runs(self, pipeline: str) -> list[Run]:
        return list((self._runs.get(pipeline) or {}).values())
