"""The errors a client raises on purpose, each with a message a person can act on."""

from __future__ import annotations

class ClientError(Exception):
    """Base class of everything this client raises on purpose; ``str(err)`` is for people."""


class ServerUnavailable(ClientError):
    """Nothing answers at the server address (connection refused, or no answer in time)."""

    def __init__(self, url: str, detail: str | None = None, seldon: bool = False):
        self.url = url
        self.detail = detail
        start = "`make up` (or `make gateway` for your own manifests)" if seldon else "`make serve`"
        message = f"The inference server at {url} is not running. Start it with {start}."
        if detail:
            message = f"The inference server at {url} {detail}."
        super().__init__(message)


class ModelNotReady(ClientError):
    """The server runs, but the model is unknown to it or not loaded (yet).

    Attributes:
        loading: the server knows the model but it is not ready: still loading (a gateway answers
            while its MLServer starts), or it failed to load.
    """

    def __init__(self, name: str, url: str | None = None, detail: str | None = None, loading: bool = False):
        self.name = name
        self.url = url
        self.detail = detail
        self.loading = loading
        where = f" on {url}" if url else ""
        if loading:
            message = (f"Model {name!r} is not ready yet{where}: it is still loading, or it failed to load "
                       f"(the server's model list says which). Try again in a moment.")
        else:
            message = (f"Model {name!r} is not loaded{where}. Check that its folder is in the models "
                       f"directory the server was started on, and the server log for load errors.")
        super().__init__(message)


class BadRequest(ClientError):
    """The server refused the request (HTTP 4xx / gRPC INVALID_ARGUMENT); the message is its own."""

    def __init__(self, message: str, status: int = 400, model: str | None = None):
        self.message = message
        self.status = status
        self.model = model
        super().__init__(message)


class PipelineNotReady(ClientError):
    """The endpoint serves no such pipeline, or one of its steps' models is not loaded (yet).

    Attributes:
        name: the pipeline.
        loading: ``True`` when the pipeline exists but a step's model is not ready; ``False`` when
            the endpoint does not serve it at all (e.g. a plain MLServer, which has no pipelines).
    """

    def __init__(self, name: str, url: str | None = None, detail: str | None = None, loading: bool = False):
        self.name = name
        self.url = url
        self.detail = detail
        self.loading = loading
        where = f" at {url}" if url else ""
        if loading:  # the detail (a step's gRPC error) says less than the status line does
            message = (f"Pipeline {name!r}{where} is not ready: its models are still loading, or one failed "
                       f"to load (the server's model list says which).")
        else:
            message = f"Pipeline {name!r} is not served{where}" + (f" ({detail})." if detail else ".")
        super().__init__(message)


class InferenceFailed(ClientError):
    """The server accepted the request but failed while running the model (HTTP 5xx)."""

    def __init__(self, message: str, status: int = 500, model: str | None = None):
        self.message = message
        self.status = status
        self.model = model
        prefix = f"model {model!r} failed" if model else "the server failed"
        super().__init__(f"{prefix} (status {status}): {message}")
