"""Admission control in the inference API: a queue bounded in time, and abandoned requests dropped.

The model here is a stand-in the test holds: it blocks every batch until the test lets it go, so
what happens while a batch is stuck is decided by the code under test, never by timing.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from inference.batcher import Batcher, Shed
from inference.metrics import CLIENT_GONE, PREDICT, PREDICTION_ROUTES
from inference.model_store import LoadedModel, Predict
from tests.servers import Running

DEADLINE_S = 30.0  # generous: how long a poll waits for something that must happen


class HeldModel:
    """A model under `base` whose calls wait for `release`; it records the inputs of every call."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls: list[np.ndarray] = []

    def loader(self, _: Path) -> Predict:
        def predict(batch: np.ndarray) -> np.ndarray:
            self.calls.append(batch.copy())
            self.entered.release()
            assert self.release.wait(DEADLINE_S), "the test never released the model"
            return np.full((len(batch), 10), 0.1, dtype=np.float32)

        return predict

    def serving(self, **options: float) -> Running:
        """The inference API serving this model, with `options` for its Config."""
        return Running(self.base, model_name="mnist", loader=self.loader, **options)

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=DEADLINE_S), "no batch reached the model"


def _image(value: float) -> list[list[float]]:
    return np.full((28, 28), value).tolist()


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@pytest.fixture
def held(tmp_path: Path) -> HeldModel:
    (tmp_path / "model" / "1").mkdir(parents=True)
    return HeldModel(tmp_path / "model")


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def _post(api: Running, value: float) -> httpx.Response:
    with httpx.Client(base_url=str(api.client.base_url), timeout=DEADLINE_S) as client:
        return client.post("/v1/models/mnist:predict", json={"instances": [_image(value)]})


def _metric(api: Running, prefix: str) -> float:
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_past_its_budget_a_request_gets_503_while_the_batch_ahead_is_still_stuck(
    tmp_path: Path, held: HeldModel, pool: ThreadPoolExecutor
) -> None:
    with held.serving(
        max_batch_size=1,
        batch_timeout_ms=0,
        max_queue_ms=1000,
    ) as api:
        admitted: Future[httpx.Response] = pool.submit(_post, api, 0.5)
        held.wait_entered()  # the first request is in a batch, and the batch is held
        shed = _post(api, 0.25)  # queued behind it; its budget runs out while the model is held
        assert not held.release.is_set()
        assert not admitted.done()
        assert shed.status_code == 503, shed.text
        assert shed.headers["retry-after"] == "1"
        assert re.fullmatch(r".*1000 ms queue budget.*", shed.json()["error"])
        assert set(shed.json()) == {"error"}  # TF Serving's error shape
        held.release.set()
        served = admitted.result(timeout=DEADLINE_S)
        assert served.status_code == 200
        assert len(served.json()["predictions"]) == 1
        assert len(held.calls) == 1  # the shed request never reached the model
        assert _metric(api, 'inference_requests_shed_total{route="predict"}') == 1.0
        assert _metric(api, 'inference_requests_total{route="predict",status="503"}') == 1.0
        assert _metric(api, 'inference_requests_total{route="predict",status="200"}') == 1.0


def test_a_request_whose_client_went_away_is_not_computed(
    tmp_path: Path, held: HeldModel, pool: ThreadPoolExecutor
) -> None:
    with held.serving(
        max_batch_size=1,
        batch_timeout_ms=0,
        max_queue_ms=60_000,
    ) as api:
        batcher = api.app.state.service.batcher
        admitted: Future[httpx.Response] = pool.submit(_post, api, 0.5)
        held.wait_entered()
        body = b'{"instances": [' + str(_image(0.25)).encode() + b"]}"
        port = api.client.base_url.port
        assert port is not None
        with socket.create_connection(("127.0.0.1", port)) as gone:
            gone.sendall(
                b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            _until(lambda: batcher.queued == 1, "the second request never queued")
        # The client has closed its connection while its request waits behind the held batch.
        _until(lambda: batcher.queued == 0, "the abandoned request stayed queued")
        held.release.set()
        assert admitted.result(timeout=DEADLINE_S).status_code == 200
        # A later request is served: the abandoned one did not reach the model before it.
        assert _post(api, 0.75).status_code == 200
        assert [float(call.max()) for call in held.calls] == [0.5, 0.75]
        assert (
            _metric(api, f'inference_requests_total{{route="{PREDICT}",status="{CLIENT_GONE}"}}')
            == 1.0
        )


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_request_the_queue_cannot_start_in_time_is_shed_on_arrival() -> None:
    """With one model call known to take 100 ms, a request that would wait for the batch in
    flight is refused before it is queued: no wait for its budget to run out first."""
    clock = _Clock()
    release = threading.Event()
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 1:
            clock.now += 0.1  # the first call "takes" 100 ms
        else:
            assert release.wait(DEADLINE_S)
        return np.zeros((len(batch), 10), dtype=np.float32)

    async def scenario() -> None:
        batcher = Batcher(
            lambda: LoadedModel(1, predict),
            max_batch_size=1,
            timeout_s=0,
            max_queue_s=0.05,
            clock=clock,
        )
        batcher.start()
        try:
            one = np.zeros((1, 28, 28), dtype=np.float32)
            await batcher.predict(one)  # measures a call: 100 ms
            held = asyncio.ensure_future(batcher.predict(one))
            while len(calls) < 2:  # the second call is in flight, held
                await asyncio.sleep(0.001)
            assert not batcher.admits(1)
            with pytest.raises(Shed, match="50 ms queue budget"):
                await batcher.predict(one)
            assert batcher.queued == 0
            release.set()
            await held
        finally:
            release.set()
            await batcher.stop()
        assert calls == [1, 1]

    asyncio.run(scenario())


def test_while_the_queue_is_over_budget_predictions_are_shed_before_routing(
    tmp_path: Path, held: HeldModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    held.release.set()
    with held.serving() as api:
        batcher = api.app.state.service.batcher
        assert _post(api, 0.5).status_code == 200
        monkeypatch.setattr(batcher, "admits", lambda instances=1: False)
        for _ in range(3):  # the same keep-alive connection keeps working after each
            response = api.client.post(
                "/v1/models/mnist:predict", json={"instances": [_image(0.25)]}
            )
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert "queue budget" in response.json()["error"]
        digit = api.client.post("/v1/models/mnist:digit", content=b"not even a picture")
        assert digit.status_code == 503
        assert api.client.get("/v1/models/mnist").status_code == 200  # other routes unaffected
        assert len(held.calls) == 1
        assert _metric(api, 'inference_requests_shed_total{route="predict"}') == 3.0
        assert _metric(api, 'inference_requests_shed_total{route="digit"}') == 1.0
        assert _metric(api, 'inference_requests_total{route="predict",status="503"}') == 3.0


def _raw(api: Running, head: bytes, body: bytes) -> socket.socket:
    """A connection that has sent `head` and `body` of a predict request, and nothing else."""
    port = api.client.base_url.port
    assert port is not None
    connection = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
    connection.sendall(
        b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + head
        + b"\r\n"
        + body
    )
    return connection


def test_a_client_gone_mid_upload_is_counted_as_gone_not_as_a_server_error(
    tmp_path: Path, held: HeldModel
) -> None:
    held.release.set()
    with held.serving() as api:
        body = b'{"instances": [' + str(_image(0.25)).encode() + b"]}"
        half = len(body) // 2
        with _raw(api, f"Content-Length: {len(body)}\r\n".encode(), body[:half]):
            pass  # closed with half the body sent
        gone = f'inference_requests_total{{route="{PREDICT}",status="{CLIENT_GONE}"}}'
        _until(lambda: _metric(api, gone) == 1.0, "the abandoned upload was not counted as gone")
        assert _metric(api, f'inference_requests_total{{route="{PREDICT}",status="500"}}') == 0.0
        assert held.calls == []
        assert _post(api, 0.5).status_code == 200  # and the server keeps serving


def test_the_shed_counter_shows_every_prediction_route_before_any_shed(tmp_path: Path) -> None:
    """A series first exported at its first shed has no earlier sample for `rate()` to compare."""
    (tmp_path / "model").mkdir()
    with HeldModel(tmp_path / "model").serving() as api:
        lines = api.client.get("/metrics").text.splitlines()
    for route in PREDICTION_ROUTES:
        assert f'inference_requests_shed_total{{route="{route}"}} 0.0' in lines


@pytest.mark.parametrize(
    ("head", "body"),
    [
        # Declared over the limit: not read at all.
        (b"Content-Length: 1000000\r\n", b"x" * 100),
        # Chunked, so only reading tells its size: read no further than the limit.
        (b"Transfer-Encoding: chunked\r\n", b"7d0\r\n" + b"x" * 2000 + b"\r\n"),
    ],
    ids=["declared", "chunked"],
)
def test_a_shed_request_is_drained_no_further_than_the_body_limit(
    tmp_path: Path, held: HeldModel, monkeypatch: pytest.MonkeyPatch, head: bytes, body: bytes
) -> None:
    """The rest of the body never comes; the 503 must not wait for it."""
    held.release.set()
    with held.serving(max_body_bytes=1000) as api:
        monkeypatch.setattr(api.app.state.service.batcher, "admits", lambda instances=1: False)
        with _raw(api, head, body) as connection:
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = connection.recv(65536)  # times out (an error) if no answer comes
                assert chunk, f"the connection closed without an answer: {answer!r}"
                answer += chunk
        status, *headers = answer.split(b"\r\n\r\n")[0].split(b"\r\n")
        assert status.split()[1] == b"503", answer
        assert b"connection: close" in [h.lower() for h in headers]
        assert _metric(api, f'inference_requests_shed_total{{route="{PREDICT}"}}') == 1.0
        assert held.calls == []
