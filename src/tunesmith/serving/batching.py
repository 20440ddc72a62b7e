"""Two mends to MLServer 1.7.1's adaptive batching, for runtimes whose callers' requests are merged.

* :func:`keep_requests_whole`: a merged answer is handed back by each request's row count, which
  MLServer takes from the request's *last* input, so a request with ``prompt`` ``[2]`` and
  ``seed`` ``[1]`` (seed last) would get one row back instead of two.
* :func:`isolate_failures`: one caller's bad request must not fail the other callers.

MLServer's adaptive batcher merges the requests that arrive within ``max_batch_time`` into one,
calls ``predict`` once and splits the answer. If ``predict`` raises, MLServer 1.7.1 hands that
error to *every* request of the batch: one caller's unreadable audio file becomes a ``400`` for
seven strangers, naming a row they never sent.

:func:`isolate_failures` changes what happens after a merged batch fails with a client error (an
``MLServerError`` with a 4xx status, such as :class:`tunesmith.serving.inputs.BadInput`): each request of
the batch is run again on its own, so the good ones get their answers and the bad one its own
``400``. Server errors (5xx) still fail the batch as before; retrying cannot fix them. A batch
that succeeds is untouched, so the fast path costs nothing.

The batcher runs in MLServer's main process, which imports each runtime module to build the
model object, so a runtime calls these at import time.
"""

from __future__ import annotations

import asyncio
from functools import partial

from mlserver.batching.adaptive import AdaptiveBatcher
from mlserver.batching.requests import BatchedRequests
from mlserver.utils import schedule_with_callback

_PATCHED = "_tunesmith_isolates_failures"
_ROWS_PATCHED = "_tunesmith_rows_from_widest_input"


def keep_requests_whole() -> None:
    """Count each merged request's rows as its widest input, so its answer keeps every row.

    Safe to call more than once.
    """
    if getattr(BatchedRequests, _ROWS_PATCHED, False):
        return
    merge_inputs = BatchedRequests._merge_request_inputs

    def merge_keeping_rows(self, request_inputs):
        before = dict(self._minibatch_sizes)
        merged = merge_inputs(self, request_inputs)
        for request_id, rows in before.items():
            self._minibatch_sizes[request_id] = max(rows, self._minibatch_sizes[request_id])
        return merged

    BatchedRequests._merge_request_inputs = merge_keeping_rows
    setattr(BatchedRequests, _ROWS_PATCHED, True)


def _client_error(error: BaseException | None) -> bool:
    status = getattr(error, "status_code", None)
    return isinstance(status, int) and 400 <= status < 500


def _settle(future: asyncio.Future, request_id: str | None, task: asyncio.Task) -> None:
    """Hand the outcome of one request's own run to the caller waiting for it."""
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif task.exception() is not None:
        future.set_exception(task.exception())
    else:
        response = task.result()
        response.id = request_id  # as the batcher's split would have set it
        future.set_result(response)


def isolate_failures() -> None:
    """Make MLServer's adaptive batcher re-run each request alone when a merged batch is refused.

    Safe to call more than once (every runtime module that batches calls it).
    """
    if getattr(AdaptiveBatcher, _PATCHED, False):
        return
    merged_callback = AdaptiveBatcher._predict_callback

    def predict_callback(self, batched, predict_task) -> None:
        error = None if predict_task.cancelled() else predict_task.exception()
        requests = batched.inference_requests
        if len(requests) < 2 or not _client_error(error):
            return merged_callback(self, batched, predict_task)
        for internal_id, request in requests.items():
            future = self._async_responses[internal_id]
            schedule_with_callback(self._predict_fn(request), partial(_settle, future, request.id))

    AdaptiveBatcher._predict_callback = predict_callback
    setattr(AdaptiveBatcher, _PATCHED, True)
