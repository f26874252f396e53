"""The ASGI application: TF Serving's REST API for one model, plus a picture endpoint.

- `GET  /v1/models/<name>`            version status, as TF Serving reports it
- `POST /v1/models/<name>:predict`    `{"instances": [...]}` -> `{"predictions": [...]}`
- `POST /v1/models/<name>:digit`      a PNG/JPEG picture -> `{"digit": 7, "probabilities": [...]}`
- `GET  /healthz`, `/readyz`, `/metrics`

Errors use TF Serving's shape, `{"error": "..."}`, with a 4xx status for the client's mistakes.
A prediction that cannot start within the queue budget (`max_queue_ms`) is answered 503 with
`Retry-After` at once, as TF Serving answers UNAVAILABLE when its batch queue is full
(inference/batcher.py); one whose client has gone before its batch starts is not computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from inference.batcher import Batcher, Gone, NoModel, Result, Shed
from inference.metrics import CLIENT_GONE, DIGIT, PREDICT, PREDICTION_ROUTES, Metrics
from inference.model_store import ModelStore, Predict, load_version
from inference.payloads import BadRequest, parse_image, parse_instances

log = logging.getLogger("inference.app")


@dataclass(frozen=True)
class Config:
    model_base_path: Path
    model_name: str
    max_batch_size: int = 32
    batch_timeout_ms: float = 5.0
    max_body_bytes: int = 1 << 20
    max_instances: int = 256
    poll_seconds: float = 10.0
    # Longest a prediction may wait for its batch before it is shed with 503: well inside the
    # InferenceApiSlow threshold (p99 100 ms, infra/alerts.py), so the requests admitted under
    # overload are still answered in time, and a few full batches deep.
    max_queue_ms: float = 50.0


# Seconds a shed client is asked to wait (the header takes whole seconds, RFC 9110 s. 10.2.3).
RETRY_AFTER_S = 1


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the body is {declared} bytes; the limit is {limit}", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the body is over the {limit}-byte limit", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


class Service:
    """The model store, the batcher and the metrics behind the routes."""

    def __init__(self, config: Config, loader: Callable[[Path], Predict] = load_version) -> None:
        self.config = config
        self.metrics = Metrics()
        self.store = ModelStore(
            config.model_base_path, loader, on_reject=self.metrics.load_failures.inc
        )
        self.batcher = Batcher(
            lambda: self.store.current,
            max_batch_size=config.max_batch_size,
            timeout_s=config.batch_timeout_ms / 1000.0,
            max_queue_s=config.max_queue_ms / 1000.0,
            on_batch=self.metrics.batch_size.observe,
        )
        self.metrics.queued.set_function(lambda: self.batcher.queued)

    async def refresh(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.store.refresh)
        current = self.store.current
        self.metrics.model_version.set(current.version if current else 0)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_seconds)
            try:
                await self.refresh()
            except Exception:  # a bad poll must not stop the next ones
                log.exception("model refresh failed")

    @contextlib.asynccontextmanager
    async def running(self, _: FastAPI) -> AsyncIterator[None]:
        await self.refresh()
        # TensorFlow leaves hundreds of thousands of long-lived objects behind; a full garbage
        # collection over them stalls every request for ~100 ms.  Freezing them takes them out
        # of the collector's scans.
        gc.freeze()
        self.batcher.start()
        poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await self.batcher.stop()

    async def timed(self, route: str, handler: Callable[[], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        try:
            response = await handler()
        except BadRequest as problem:
            response = error(str(problem), problem.status)
        except NoModel as problem:
            response = error(str(problem), 503)
        except Shed as problem:
            response = self.shed(route, problem)
        except Gone:
            # Nobody reads this answer; it is counted so every request shows in the metrics.
            response = error("the client went away before its batch started", CLIENT_GONE)
        except ClientDisconnect:
            # The client went away while sending its body (Starlette's `Request.stream()` raises
            # this on http.disconnect): its failure, not the server's, so not a 500 that the
            # error-rate alert would count.
            response = error("the client went away while sending its request", CLIENT_GONE)
        except Exception:
            # The request passed every check against the model's signature, so this is the
            # server's failure (a version that loads but fails on real batches): answered in TF
            # Serving's shape and counted, like every 5xx, for the error-rate alert.  Left to the
            # framework it would be a bare 500 that /metrics never sees.
            log.exception("the %s request failed", route)
            response = error(
                f"the model failed to answer this {route} request; the server log says why", 500
            )
        self.metrics.observe(route, response.status_code, time.perf_counter() - started)
        return response

    def shed(self, route: str, problem: Shed) -> Response:
        """503 with Retry-After, in TF Serving's error shape, counted as shed."""
        self.metrics.count_shed(route)
        response = error(f"{problem}; retry after {RETRY_AFTER_S} s", 503)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    async def _predict(self, request: Request, parse: Callable[[bytes], np.ndarray]) -> Result:
        """Read, admit, parse and batch one prediction request."""
        # Admitted by `Admission` a moment ago; the real size is checked again in the batcher.
        instances = parse(await read_body(request, self.config.max_body_bytes))
        # Completes when the client disconnects (or once the response is sent): the ASGI
        # server answers `receive()` with http.disconnect then.
        gone = asyncio.ensure_future(request.receive())
        try:
            return await self.batcher.predict(instances, gone=gone)
        finally:
            gone.cancel()

    def _known(self, name: str) -> None:
        if name != self.config.model_name:
            raise BadRequest(
                f"model {name!r} not found; this server serves {self.config.model_name!r}",
                status=404,
            )

    async def status(self, name: str) -> Response:
        self._known(name)
        current = self.store.current
        if current is None:
            return error(f"no version of {name!r} is loaded yet", 404)
        version_status = {
            "version": str(current.version),
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
        return JSONResponse({"model_version_status": [version_status]})

    async def predict(self, name: str, request: Request) -> Response:
        self._known(name)
        probabilities, version = await self._predict(
            request, lambda body: parse_instances(body, self.config.max_instances)
        )
        return Response(
            orjson.dumps({"predictions": probabilities}, option=orjson.OPT_SERIALIZE_NUMPY),
            media_type="application/json",
            headers={"X-Model-Version": str(version)},
        )

    async def digit(self, name: str, request: Request) -> Response:
        self._known(name)
        probabilities, version = await self._predict(request, parse_image)
        [row] = probabilities
        return JSONResponse(
            {
                "digit": int(np.argmax(row)),
                "probabilities": [round(float(p), 6) for p in row],
                "model_version": str(version),
            }
        )

    def waiting(self) -> str:
        """Why no version is in service: none exported yet, or every one rejected."""
        name, base = self.config.model_name, self.store.base_path
        rejected = self.store.rejected
        if rejected:
            listed = ", ".join(str(v) for v in rejected)
            return (
                f"no version of {name!r} is loaded: version(s) {listed} under {base} failed to "
                "load (see the server log); waiting for a newer one"
            )
        return (
            f"no version of {name!r} is loaded yet: waiting for the first one under {base} "
            f"(looked for every {self.config.poll_seconds:g} s)"
        )

    async def ready(self) -> Response:
        current = self.store.current
        if current is None:
            return error(self.waiting(), 503)
        return JSONResponse({"status": "ready", "model_version": str(current.version)})


class Admission:
    """Sheds predictions before they reach the framework's routing while the queue is over its
    budget.  Under overload most requests are shed, and this answer costs a fraction of one
    that goes through routing and the handler, which leaves the CPU to the admitted requests and
    keeps the 503s fast.  The rest of the admission control is in the batcher."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        name = service.config.model_name
        self.routes = {f"/v1/models/{name}:{method}": method for method in PREDICTION_ROUTES}

    async def _drain(self, scope: Scope, receive: Receive) -> bool:
        """Read the body off the connection (and drop it) so the next request on it is read
        cleanly; False, having stopped early, when it is over the API's body limit, which the
        admitted requests are held to as well (`read_body`)."""
        limit = self.service.config.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return False
        size = 0
        message = await receive()
        while message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                return False
            if not message.get("more_body", False):
                break
            message = await receive()
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or self.service.batcher.admits(1):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        response = self.service.shed(route, Shed(self.service.batcher.over_budget()))
        if not await self._drain(scope, receive):
            # The rest of an oversized body is not read: the connection is closed after the
            # answer instead, as nothing else on it could be read cleanly.
            response.headers["Connection"] = "close"
        await response(scope, receive, send)
        self.service.metrics.observe(route, response.status_code, time.perf_counter() - started)


def create_app(config: Config, loader: Callable[[Path], Predict] = load_version) -> FastAPI:
    service = Service(config, loader)
    app = FastAPI(title="ml-platform inference API", lifespan=service.running)
    app.state.service = service
    app.add_middleware(Admission, service=service)

    @app.get("/v1/models/{name}")
    async def status(name: str) -> Response:
        return await service.timed("status", lambda: service.status(name))

    @app.post("/v1/models/{call}")
    async def call(call: str, request: Request) -> Response:
        name, _, method = call.partition(":")
        if method == PREDICT:
            return await service.timed(PREDICT, lambda: service.predict(name, request))
        if method == DIGIT:
            return await service.timed(DIGIT, lambda: service.digit(name, request))
        return error(f"unknown method {method!r} in {call!r}; use :predict or :digit", 404)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    # The probes are not timed: they are the kubelet's, not traffic (inference/metrics.py).
    @app.get("/readyz")
    async def readyz() -> Response:
        return await service.ready()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(
            service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return app
