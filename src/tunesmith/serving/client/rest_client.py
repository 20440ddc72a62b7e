"""The music client over V2 REST (:class:`MusicClient`)."""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import requests
from mlserver.types import InferenceRequest, InferenceResponse, RepositoryIndexResponse, RequestInput

from tunesmith.serving.client.api import _MusicApi
from tunesmith.serving.client.errors import (
    BadRequest,
    ClientError,
    InferenceFailed,
    ModelNotReady,
    PipelineNotReady,
    ServerUnavailable,
)
from tunesmith.serving.client.protocol import (
    CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    _NOT_READY,
    PIPELINE_VERSION,
    REQUEST_ID,
    SELDON_MODEL,
    SELDON_ROUTE,
    URL_ENV,
    _header_values,
    seldon_from_env,
    seldon_name,
    server_message,
)
from tunesmith.serving.client.replies import Reply
from tunesmith.serving.client.tensors import decode_outputs, encode_inputs


class MusicClient(_MusicApi):
    """V2 REST client for the music models.

    Args:
        url: server base URL; defaults to ``$TUNESMITH_SERVER_URL``, else ``http://127.0.0.1:8080``.
        timeout: seconds to wait for an answer (generation is slow on a CPU).
        seldon: talk to a Seldon Core v2 endpoint (``tunesmith gateway`` or a cluster's mesh): versions
            are Models of their own (:func:`seldon_name`), every call carries the ``Seldon-Model``
            header, and the model listing is the gateway's ``GET /v2/models``. ``None``: as
            ``$TUNESMITH_SELDON`` says (see :func:`seldon_from_env`).

    One client keeps one HTTP connection pool (a :class:`requests.Session`), so repeated calls do
    not pay for a new TCP connection each time. Use one client per thread.
    """

    def __init__(self, url: str | None = None, timeout: float = DEFAULT_TIMEOUT, seldon: bool | None = None):
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.target = self.url
        self.timeout = timeout
        self.seldon = seldon_from_env() if seldon is None else bool(seldon)
        self.last_reply = None
        self.session = requests.Session()

    def __repr__(self) -> str:
        return f"MusicClient({self.url!r}{', seldon=True' if self.seldon else ''})"

    def close(self) -> None:
        self.session.close()

    # -- plumbing ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        timeout = kwargs.pop("timeout", self.timeout)
        try:
            return self.session.request(
                method, self.url + path, timeout=(min(CONNECT_TIMEOUT, timeout), timeout), **kwargs
            )
        except requests.ConnectTimeout as exc:
            raise ServerUnavailable(self.url, seldon=self.seldon) from exc
        except requests.ReadTimeout as exc:
            raise ServerUnavailable(self.url, f"did not answer within {timeout:g} s") from exc
        except requests.ConnectionError as exc:
            raise ServerUnavailable(self.url, seldon=self.seldon) from exc

    @staticmethod
    def _error_text(response: requests.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text.strip() or response.reason
        if isinstance(body, dict) and body.get("error"):
            return server_message(str(body["error"]))
        if isinstance(body, dict) and body.get("detail"):  # FastAPI's own validation errors
            return str(body["detail"])
        return response.text.strip()

    def _raise_for(self, response: requests.Response, model: str | None = None) -> None:
        if response.status_code < 400:
            return
        text = self._error_text(response)
        if model is not None and model.endswith(".experiment") and response.status_code == 404:
            raise BadRequest(text, 404, model)  # the gateway names the experiments it has
        if model is not None and (response.status_code == 503 or "is not ready" in text):
            raise ModelNotReady(model, self.url, text, loading=True)  # a gateway whose MLServer is starting: 503
        if model is not None and (response.status_code == 404 or _NOT_READY.search(text)):
            raise ModelNotReady(model, self.url, text)
        if response.status_code < 500:
            raise BadRequest(text, response.status_code, model)
        raise InferenceFailed(text, response.status_code, model)

    def _raise_for_pipeline(self, response: requests.Response, name: str) -> None:
        """A pipeline's refusal: 404 not served; a step's model not loaded is "not ready"; else as a model's.

        A failed step answers 400 with Seldon's plain text ``<step> : <error>``.
        """
        if response.status_code < 400:
            return
        text = self._error_text(response)
        if response.status_code == 404:
            raise PipelineNotReady(name, self.url, text)
        if response.status_code in (424, 503) or _NOT_READY.search(text) or "code = Unavailable" in text:
            raise PipelineNotReady(name, self.url, text, loading=True)
        if response.status_code < 500:
            raise BadRequest(text, response.status_code, name)
        raise InferenceFailed(text, response.status_code, name)

    def _seldon_header(self, name: str) -> dict[str, str]:
        return {SELDON_MODEL: name} if self.seldon else {}

    def _model_path(self, model: str, version: str | None) -> tuple[str, str]:
        """``(name, path prefix)`` of a model call: Seldon has no ``/versions/`` path, MLServer has."""
        if self.seldon:
            name = seldon_name(model, version)
            return name, f"/v2/models/{name}"
        return model, f"/v2/models/{model}" + (f"/versions/{version}" if version else "")

    @staticmethod
    def _route(response: requests.Response) -> tuple[tuple[str, ...], str | None, str | None]:
        headers = response.headers
        return _header_values(headers.get(SELDON_ROUTE)), headers.get(REQUEST_ID), headers.get(PIPELINE_VERSION)

    # -- server and models ------------------------------------------------------------------------
    def live(self) -> bool:
        """Whether the server answers its liveness probe; ``False`` when nothing runs at the URL."""
        try:
            return self._request("GET", "/v2/health/live", timeout=CONNECT_TIMEOUT).status_code == 200
        except ServerUnavailable:
            return False

    def ready(self) -> bool:
        """Whether the server reports every model loaded (``/v2/health/ready``)."""
        try:
            return self._request("GET", "/v2/health/ready", timeout=CONNECT_TIMEOUT).status_code == 200
        except ServerUnavailable:
            return False

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether model ``name`` (at ``version``) is loaded and can serve requests.

        Raises:
            ServerUnavailable: nothing answers at the URL (so "not ready" is not misread as "down").
        """
        target, path = self._model_path(name, version)
        return self._request("GET", path + "/ready", timeout=CONNECT_TIMEOUT,
                             headers=self._seldon_header(target)).status_code == 200

    def models(self) -> list[dict]:
        """Every model the server knows: ``[{"name", "version", "state", "reason"}, ...]``.

        MLServer answers from its repository index (``POST /v2/repository/index``). Talking Seldon,
        the list is the gateway's ``GET /v2/models`` (Seldon names, no versions): Seldon keeps the
        repository API inside the cluster, and a cluster's mesh has no listing (``seldon model status``
        tells there), which is a :class:`ClientError` here.
        """
        if not self.seldon:
            response = self._request("POST", "/v2/repository/index", json={})
            self._raise_for(response)
            index = RepositoryIndexResponse.model_validate(response.json())
            return [item.model_dump(mode="json") for item in index]
        response = self._request("GET", "/v2/models", timeout=CONNECT_TIMEOUT * 2)
        if response.status_code == 404:
            raise ClientError(f"{self.url} lists no models (GET /v2/models is tunesmith gateway's; on a "
                              f"cluster, `seldon model status` lists them)")
        self._raise_for(response)
        return [
            {"name": m["name"], "version": None, "state": m.get("state"), "reason": m.get("reason") or ""}
            for m in response.json().get("models", [])
        ]

    def pipelines(self) -> list[dict]:
        """The pipelines a gateway serves: ``[{"name", "version", "steps", "ready"}, ...]`` (``GET /v2/pipelines``).

        Raises:
            ClientError: the endpoint lists no pipelines (a plain MLServer has none).
        """
        response = self._request("GET", "/v2/pipelines", timeout=CONNECT_TIMEOUT * 2)
        if response.status_code == 404:
            raise ClientError(f"{self.url} serves no pipelines: pipelines run on a Seldon endpoint (`make up` "
                              f"with stage 3's manifests, or `make gateway`)")
        self._raise_for(response)
        return list(response.json().get("pipelines", []))

    def pipeline_ready(self, name: str) -> bool:
        """Whether pipeline ``name`` is served and every step's model is loaded (``/v2/pipelines/{name}/ready``).

        Raises:
            ServerUnavailable: nothing answers at the URL.
        """
        response = self._request("GET", f"/v2/pipelines/{name}/ready", timeout=CONNECT_TIMEOUT,
                                 headers={SELDON_MODEL: f"{name}.pipeline"})
        return response.status_code == 200

    def metadata(self, name: str) -> dict:
        """Model metadata (declared inputs and outputs) from ``GET /v2/models/{name}``."""
        target, _ = self._model_path(name, None)
        response = self._request("GET", f"/v2/models/{target}", headers=self._seldon_header(target))
        self._raise_for(response, model=target)
        return response.json()

    # -- inference --------------------------------------------------------------------------------
    def _post_infer(self, model: str, request: InferenceRequest, version: str | None) -> tuple[str, requests.Response]:
        name, path = self._model_path(model, version)
        response = self._request(
            "POST",
            path + "/infer",
            data=request.model_dump_json(exclude_none=True),
            headers={"Content-Type": "application/json", **self._seldon_header(name)},
        )
        self._raise_for(response, model=name)
        return name, response

    def infer_request(self, model: str, request: InferenceRequest, version: str | None = None) -> InferenceResponse:
        """Send a ready-made :class:`InferenceRequest` and return the raw :class:`InferenceResponse`."""
        _, response = self._post_infer(model, request, version)
        return InferenceResponse.model_validate(response.json())

    def call(self, model: str, inputs: Mapping[str, Any] | Iterable[RequestInput], version: str | None = None) -> Reply:
        """Run any model; its decoded outputs and who answered (see :meth:`infer`)."""
        request = InferenceRequest(inputs=encode_inputs(inputs, binary="base64"))
        name, response = self._post_infer(model, request, version)
        answer = InferenceResponse.model_validate(response.json())
        route, request_id, _ = self._route(response)
        self.last_reply = Reply(name, decode_outputs(answer), route, request_id, answer.model_version,
                                response=answer)
        return self.last_reply

    def pipeline(self, name: str, /, **inputs: Any) -> Reply:
        """Run a Seldon pipeline: ``POST /v2/pipelines/{name}/infer`` with ``Seldon-Model: {name}.pipeline``.

        Args:
            name: the pipeline, e.g. :data:`STUDIO`.
            **inputs: its inputs by name (values as :func:`encode_input` takes them).

        Returns:
            The outputs, the route (every model the request went through, then the pipeline), the
            request id and the pipeline version.

        Raises:
            PipelineNotReady: no such pipeline here, or a step's model is not loaded yet.
            BadRequest: a step refused its input (Seldon's text ``<step> : <error>``).
            ServerUnavailable, InferenceFailed.
        """
        request = InferenceRequest(inputs=encode_inputs(inputs, binary="base64"))
        response = self._request(
            "POST",
            f"/v2/pipelines/{name}/infer",
            data=request.model_dump_json(exclude_none=True),
            headers={"Content-Type": "application/json", SELDON_MODEL: f"{name}.pipeline"},
        )
        self._raise_for_pipeline(response, name)
        answer = InferenceResponse.model_validate(response.json())
        route, request_id, version = self._route(response)
        self.last_reply = Reply(name, decode_outputs(answer), route, request_id, None, version, "pipeline",
                                response=answer)
        return self.last_reply
