"""The pure parts of the hardened MLServer entry point, without starting a server.

The patches are called directly here; none is installed into this test process (they change
MLServer's classes for good), except in a subprocess to check that installing is idempotent.
"""

import asyncio
import base64
import json
import logging
import logging.config
import struct
import subprocess
import sys

import pytest
from mlserver.errors import MLServerError
from mlserver.parallel.dispatcher import Dispatcher
from mlserver.parallel.errors import WorkerStop
from mlserver.parallel.messages import ModelRequestMessage, ModelResponseMessage
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest, RequestInput

from tunesmith.serving import logs, mlserver_main, model_health, request_guards
from tunesmith.serving.launcher import Server, ServerError
from tunesmith.serving.request_guards import BadRequest, check_request, request_limit, safe_inject_raw


# -- settings ---------------------------------------------------------------------------------------
def test_unknown_settings_keys_are_refused_with_a_suggestion():
    with pytest.raises(ValueError, match=r"'hots' \(did you mean 'host'\?\)"):
        mlserver_main.check_settings({"hots": "127.0.0.1", "debug": False}, "settings.json")
    mlserver_main.check_settings({"host": "127.0.0.1", "debug": False, "grpc_max_message_length": 1}, "s.json")


def test_the_known_keys_are_mlservers_own():
    from mlserver.settings import Settings

    assert mlserver_main.SETTINGS_KEYS_1_7_1 == set(Settings.model_fields)


def test_launcher_refuses_a_misspelt_setting(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"host": "127.0.0.1", "http_port": 1, "degub": False}))
    with pytest.raises(ServerError, match="degub"):
        Server(models_dir=tmp_path, settings_file=settings, name="unit-misspelt")


def test_logging_settings_path_is_kept_relative_to_the_settings_file(tmp_path):
    merged = mlserver_main.settings_for_run({"logging_settings": "logging.json"}, tmp_path / "settings.json")
    assert merged["logging_settings"] == str(tmp_path.resolve() / "logging.json")
    absolute = mlserver_main.settings_for_run({"logging_settings": "/abs/l.json"}, tmp_path / "s.json")
    assert absolute["logging_settings"] == "/abs/l.json"


def test_the_repository_logging_file_configures(tmp_path):
    from tunesmith import paths

    config = json.loads((paths.SETTINGS / "logging.json").read_text())
    config = mlserver_main._log_files_in(config, tmp_path)
    assert config["handlers"]["file"]["filename"] == str(tmp_path / "server.log")
    logging.config.dictConfig(config)
    try:
        logging.getLogger("mlserver").info("hello")
        assert "hello" in (tmp_path / "server.log").read_text()
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


# -- one size limit from the models' own ------------------------------------------------------------
def write_model(root, folder, extra):
    (root / folder).mkdir(parents=True)
    (root / folder / "model-settings.json").write_text(json.dumps({"name": folder, "parameters": {"extra": extra}}))


def test_request_limit_is_the_largest_audio_in_base64_plus_json(tmp_path):
    write_model(tmp_path, "fx", {"max_audio_bytes": 3_000_000})
    write_model(tmp_path, "classifier", {"max_audio_bytes": 20_000_000, "max_audio_seconds": 60})
    write_model(tmp_path, "generator", {"max_prompts": 64})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model-settings.json").write_text("{not json")
    limit, why = request_limit(str(tmp_path))
    assert limit == 4 * -(-20_000_000 // 3) + (1 << 20)
    assert "classifier: max_audio_bytes=20000000" in why


def test_request_limit_counts_seconds_as_cd_quality_wav_and_never_goes_below_grpc_default(tmp_path):
    write_model(tmp_path, "synth", {"max_audio_seconds": 120})
    limit, _ = request_limit(str(tmp_path))
    assert limit > 120 * 44100 * 4 * 4 / 3
    assert request_limit(str(tmp_path / "nothing"))[0] == 4 << 20


# -- the request against the model's declarations ---------------------------------------------------
SYNTH = ModelSettings(
    name="synthesizer",
    implementation="mlserver.MLModel",
    inputs=[
        {"name": "abc", "datatype": "BYTES", "shape": [1]},
        {"name": "tempo", "datatype": "INT32", "shape": [1]},
    ],
    outputs=[{"name": "audio", "datatype": "BYTES", "shape": [1]}],
)


def req(*inputs, outputs=None) -> InferenceRequest:
    return InferenceRequest.model_validate({"inputs": list(inputs), "outputs": outputs})


def inp(name, datatype, data, shape=None, **parameters):
    out = {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}
    if parameters:
        out["parameters"] = parameters
    return out


@pytest.mark.parametrize(
    "request_, words",
    [
        (req(inp("abc", "BYTES", ["x"]), inp("tempi", "INT32", [120])), ["unknown input", "tempi", "tempo"]),
        (req(inp("abc", "BYTES", ["x"]), outputs=[{"name": "mp3"}]), ["unknown output", "mp3", "audio"]),
        (req(inp("abc", "BYTES", ["x"]), inp("abc", "BYTES", ["y"])), ["more than once", "abc"]),
        (req(inp("abc", "BYTES", ["x"]), inp("tempo", "INT32", [3.7])), ["tempo", "whole number"]),
        (req(inp("abc", "BYTES", ["x"]), inp("tempo", "INT32", [2**40])), ["tempo", "INT32"]),
        (req(inp("abc", "BYTES", ["x"]), inp("tempo", "INT32", ["fast"])), ["tempo", "not a number"]),
        (req(inp("abc", "BYTES", [1])), ["abc", "BYTES"]),
        (req(inp("abc", "BYTES", ["x", "y"], shape=[5])), ["abc", "shape"]),
        (req(inp("abc", "BYTES", ["!!!"], content_type="base64")), ["abc", "base64"]),
        (req(inp("abc", "BYTES", ["x"], content_type="nope")), ["abc", "content_type", "nope"]),
    ],
)
def test_bad_requests_are_400_naming_the_problem(request_, words):
    with pytest.raises(BadRequest) as caught:
        check_request(SYNTH, request_)
    assert caught.value.status_code == 400
    for word in words:
        assert word.lower() in str(caught.value).lower()


def test_good_requests_pass():
    check_request(SYNTH, req(inp("abc", "BYTES", ["x"]), inp("tempo", "INT32", [120.0]), outputs=[{"name": "audio"}]))
    check_request(SYNTH, req(inp("abc", "BYTES", [base64.b64encode(b"\0\1").decode()], content_type="base64")))
    check_request(SYNTH, req(inp("abc", "BYTES", [["x"]], shape=[1, 1])))


def test_seed_beyond_int64_names_the_seed():
    generator = ModelSettings(name="g", implementation="mlserver.MLModel",
                              inputs=[{"name": "seed", "datatype": "INT64", "shape": [-1]}])
    with pytest.raises(BadRequest, match="'seed'.*INT64"):
        check_request(generator, req(inp("seed", "INT64", [2**70])))
    check_request(generator, req(inp("seed", "INT64", [2**63 - 1])))


def test_an_input_declared_repeatable_may_come_more_than_once():
    critic = ModelSettings(name="critic", implementation="mlserver.MLModel", inputs=[
        {"name": "header", "datatype": "BYTES", "shape": [-1]},
        {"name": "candidates", "datatype": "BYTES", "shape": [-1], "parameters": {"repeatable": True}},
    ])
    check_request(critic, req(inp("header", "BYTES", ["M:6/8"]), inp("candidates", "BYTES", ["a"]),
                              inp("candidates", "BYTES", ["b", "c"])))
    with pytest.raises(BadRequest, match="'header'.*more than once"):
        check_request(critic, req(inp("header", "BYTES", ["x"]), inp("header", "BYTES", ["y"])))


def test_a_model_that_declares_nothing_is_not_checked_for_names():
    free = ModelSettings(name="free", implementation="mlserver.MLModel")
    check_request(free, req(inp("anything", "BYTES", ["x"]), outputs=[{"name": "whatever"}]))


# -- gRPC raw contents ------------------------------------------------------------------------------
def raw_input(name, datatype, shape):
    return RequestInput.construct(name=name, datatype=datatype, shape=shape, data=[], parameters=None)


@pytest.mark.parametrize(
    "elems, raw, words",
    [
        ([raw_input("abc", "BYTES", [1])], [b"\x01\0\0\0"], ["abc", "past the end"]),
        ([raw_input("abc", "BYTES", [2])], [struct.pack("<I", 1) + b"x"], ["abc", "2 element"]),
        ([raw_input("gain", "FP32", [1])], [b"\0\0"], ["gain", "4 bytes"]),
        ([raw_input("abc", "BYTES", [1]), raw_input("tempo", "INT32", [1])], [b"\0\0\0\0"], ["1 entries", "tempo"]),
        ([raw_input("abc", "FOO", [1])], [b"abcd"], ["abc", "FOO"]),
        ([raw_input("tempo", "INT32", [10**12])], [b"abcd"], ["tempo", "4000000000000"]),
        ([raw_input("tempo", "INT32", [-1])], [b"abcd"], ["tempo", "negative"]),
    ],
)
def test_raw_contents_that_do_not_match_are_invalid_argument(elems, raw, words):
    with pytest.raises(MLServerError) as caught:
        safe_inject_raw(elems, raw)
    assert caught.value.status_code == 400
    for word in words:
        assert word in str(caught.value)


def test_matching_raw_contents_are_unpacked():
    elems = [raw_input("abc", "BYTES", [1]), raw_input("tempo", "INT32", [2])]
    safe_inject_raw(elems, [struct.pack("<I", 3) + b"abc", struct.pack("<2i", 120, 90)])
    assert list(elems[0].data.root) == [b"abc"] and list(elems[1].data.root) == [120, 90]


# -- streaming: errors before the stream starts ----------------------------------------------------
class FakeDataPlane:
    def __init__(self, events, error=None):
        self.events, self.error = events, error

    async def infer_stream(self, payloads, name, version=None):
        async for _ in payloads:
            pass
        for event in self.events:
            yield event
        if self.error is not None:
            raise self.error


class FakeEndpoints:
    def __init__(self, data_plane):
        self._data_plane = data_plane


class FakeRequest:
    headers = {}


def run_stream(data_plane):
    async def go():
        response = await request_guards.infer_stream(FakeEndpoints(data_plane), FakeRequest(), req(), "m")
        return response.status_code, [chunk async for chunk in response.body_iterator]

    return asyncio.run(go())


def test_an_error_before_the_first_event_is_raised_before_the_response_starts():
    with pytest.raises(BadRequest, match="no inputs"):
        run_stream(FakeDataPlane([], BadRequest("no inputs")))


def test_an_error_after_the_stream_started_ends_it_with_an_error_event():
    from mlserver.types import InferenceResponse

    first = InferenceResponse(model_name="m", outputs=[])
    status, chunks = run_stream(FakeDataPlane([first, first], MLServerError("broke", 503)))
    assert status == 200 and len(chunks) == 3
    assert chunks[-1].startswith(b"event: error") and b'"status_code": 503' in chunks[-1]


# -- worker pool: wait for a worker, retry once, then 503 ------------------------------------------
class FakeWorker:
    """Answers each request a moment later, as a worker process would, or never (a dead one)."""

    def __init__(self, pid, dispatcher, answer=True):
        self.pid, self.dispatcher, self.answer = pid, dispatcher, answer

    def send_request(self, message):
        if self.answer:
            reply = ModelResponseMessage(id=message.id, return_value=f"from {self.pid}")
            asyncio.get_running_loop().call_later(0.01, self.dispatcher._async_responses.resolve, reply)


def message():
    return ModelRequestMessage(model_name="m", method_name="predict")


def new_dispatcher(monkeypatch, wait=1.0):
    monkeypatch.setattr(model_health, "WORKER_WAIT_SECONDS", wait)
    monkeypatch.setattr(Dispatcher, "_reset_round_robin", model_health.reset_round_robin)
    for name in ("on_worker_start", "on_worker_ready", "on_worker_stop", "dispatch_request"):
        monkeypatch.setattr(Dispatcher, name, getattr(model_health, name))
    monkeypatch.setattr(WorkerStop, "__init__", model_health.worker_stop_init)
    return Dispatcher({}, responses=None)


def test_requests_wait_for_a_restarting_worker(monkeypatch):
    async def go():
        dispatcher = new_dispatcher(monkeypatch, wait=5)
        assert model_health.serving_workers(dispatcher) == 0
        pending = asyncio.ensure_future(dispatcher.dispatch_request(message()))
        await asyncio.sleep(0.1)
        worker = FakeWorker(7, dispatcher)
        await dispatcher.on_worker_start(worker)
        await asyncio.sleep(0.1)
        assert not pending.done()  # loading its models: not in rotation yet
        dispatcher.on_worker_ready(worker)
        return (await pending).return_value, model_health.serving_workers(dispatcher)

    assert asyncio.run(go()) == ("from 7", 1)


def test_no_worker_within_the_bound_is_a_503_naming_the_cause(monkeypatch):
    async def go():
        dispatcher = new_dispatcher(monkeypatch, wait=0.2)
        worker = FakeWorker(7, dispatcher)
        await dispatcher.on_worker_start(worker)
        dispatcher.on_worker_ready(worker)
        dispatcher.on_worker_stop(worker, 9)
        await dispatcher.dispatch_request(message())

    with pytest.raises(model_health.NoWorkerAvailable) as caught:
        asyncio.run(go())
    assert caught.value.status_code == 503 and "exit code 9" in str(caught.value)


def test_a_request_whose_worker_dies_is_sent_once_more(monkeypatch):
    async def go():
        dispatcher = new_dispatcher(monkeypatch, wait=5)
        dead = FakeWorker(1, dispatcher, answer=False)
        await dispatcher.on_worker_start(dead)
        dispatcher.on_worker_ready(dead)
        pending = asyncio.ensure_future(dispatcher.dispatch_request(message()))
        await asyncio.sleep(0.05)
        dispatcher.on_worker_stop(dead, 9)
        restarted = FakeWorker(2, dispatcher)
        await dispatcher.on_worker_start(restarted)
        dispatcher.on_worker_ready(restarted)
        return (await pending).return_value

    assert asyncio.run(go()) == "from 2"


# -- logs -------------------------------------------------------------------------------------------
def record_with(exc, message="calling predict"):
    try:
        raise exc
    except type(exc):
        return logging.LogRecord("mlserver.parallel", logging.ERROR, __file__, 1, message, None, sys.exc_info())


def test_client_errors_become_one_warning_line_and_server_errors_keep_their_traceback():
    client = record_with(MLServerError("no inputs", 400))
    assert logs.ClientErrorsAsWarnings().filter(client)
    assert client.levelname == "WARNING" and client.exc_info is None
    assert client.getMessage() == "calling predict -> 400 MLServerError: no inputs"
    server = record_with(RuntimeError("boom"))
    logs.ClientErrorsAsWarnings().filter(server)
    assert server.levelname == "ERROR" and server.exc_info is not None


def test_console_stops_at_its_budget(tmp_path):
    import io

    stream = io.StringIO()
    console = logs.CappedConsole(stream, max_bytes=300, rest_in="server.log")
    for i in range(50):
        console.handle(logging.LogRecord("mlserver", logging.WARNING, __file__, 1, f"line {i} " + "x" * 40, None, None))
    lines = stream.getvalue().splitlines()
    assert len(stream.getvalue()) < 400 and "rest is in server.log" in lines[-1]


# -- the ASGI guard ---------------------------------------------------------------------------------
def call_guard(headers, chunks, limit=100, method="POST"):
    """Run RequestGuard around an app that echoes the body it got; return (status, body, app was called)."""
    seen = {}

    async def app(scope, receive, send):
        message = await receive()
        seen["body"] = message["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/v2/x", "scheme": "http",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    guard = request_guards.RequestGuard(app, max_body_bytes=limit, limit_source="test limit")
    asyncio.run(guard(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body, seen.get("body")


JSON = {"Content-Type": "application/json", "Host": "127.0.0.1:8080"}


def test_guard_passes_a_normal_request_with_its_body():
    assert call_guard(JSON, [b'{"a":', b" 1}"]) == (200, b"ok", b'{"a": 1}')
    assert call_guard({"Host": "127.0.0.1:8080"}, [b"{}"])[0] == 200  # tritonclient sends no Content-Type
    same_origin = {**JSON, "Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}
    assert call_guard(same_origin, [b"{}"])[0] == 200


@pytest.mark.parametrize(
    "headers, chunks, status, words",
    [
        ({**JSON, "Content-Length": "1000"}, [b"x" * 1000], 413, ["100 bytes", "test limit"]),
        (JSON, [b"x" * 60, b"x" * 60], 413, ["100 bytes"]),
        ({**JSON, "Content-Encoding": "gzip"}, [b"x"], 415, ["gzip"]),
        ({**JSON, "Content-Type": "text/plain"}, [b"{}"], 415, ["application/json"]),
        ({**JSON, "Origin": "http://evil.example"}, [b""], 403, ["evil.example"]),
        ({**JSON, "Sec-Fetch-Site": "cross-site"}, [b""], 403, ["cross-site"]),
    ],
)
def test_guard_refuses_before_mlserver_reads_anything(headers, chunks, status, words):
    got, body, app_saw = call_guard(headers, chunks)
    assert got == status and app_saw is None
    for word in words:
        assert word in json.loads(body)["error"]


def test_installing_twice_is_harmless():
    code = (
        "from tunesmith.serving import mlserver_main as m, request_guards as r\n"
        "m.install(); m.install()\n"
        "from mlserver.handlers.dataplane import DataPlane\n"
        "assert DataPlane._prepare_payload is r.prepare_payload\n"
        "import importlib; c = importlib.import_module('mlserver.cli.main')\n"
        "assert c.load_settings._tunesmith\n"
        "import grpc, mlserver.grpc.utils as g\n"
        "assert g.STATUS_CODE_MAPPING[413] == grpc.StatusCode.RESOURCE_EXHAUSTED\n"
        "assert g.STATUS_CODE_MAPPING[503] == grpc.StatusCode.UNAVAILABLE\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- the runtime's own reader, for runtimes called without the server ------------------------------
@pytest.mark.parametrize(
    "name, datatype, value, words",
    [("bars", "INT32", 3.7, ["bars", "whole number"]), ("seed", "INT64", 2**70, ["seed", "does not fit INT64"])],
)
def test_read_column_refuses_what_numpy_would_cut_or_overflow(name, datatype, value, words):
    from tunesmith.serving.inputs import BadInput, read_column

    request = InferenceRequest.model_validate_json(json.dumps({"inputs": [inp(name, datatype, [value])]}))
    with pytest.raises(BadInput) as caught:
        read_column(request, name, 1, kind=int, default=1, low=0, high=2**31 - 1)
    for word in words:
        assert word in str(caught.value)
