"""The inference API, on loopback, serving models that training.train exported."""

from __future__ import annotations

import io
import re
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from inference import server as cli
from inference.metrics import PREDICT, PREDICTION_ROUTES
from tests.faulty_model import export_batch_of_one
from tests.servers import Running


@pytest.fixture
def api(base: Path) -> Iterator[Running]:
    with Running(base, poll_seconds=0.2, batch_timeout_ms=5.0) as running:
        yield running


def _predict(api: Running, instances: list[object]) -> httpx.Response:
    return api.client.post("/v1/models/mnist:predict", json={"instances": instances})


def test_status_and_probes(api: Running, base: Path) -> None:
    [version] = [p.name for p in base.iterdir()]
    status = api.client.get("/v1/models/mnist").json()
    assert status == {
        "model_version_status": [
            {
                "version": version,
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert api.client.get("/healthz").status_code == 200
    assert api.client.get("/readyz").json() == {"status": "ready", "model_version": version}


def test_predictions_equal_the_saved_models_own_output(
    api: Running, base: Path, exported: tuple[Path, np.ndarray, Path]
) -> None:
    _, images, _ = exported
    [version_dir] = list(base.iterdir())
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    [expected] = serve(image=tf.constant(images[:8])).values()
    response = _predict(api, images[:8].tolist())
    assert response.status_code == 200
    assert response.headers["x-model-version"] == version_dir.name
    np.testing.assert_allclose(
        np.array(response.json()["predictions"]), expected.numpy(), atol=1e-6
    )
    flat = _predict(api, [images[0].reshape(784).tolist()])
    np.testing.assert_allclose(flat.json()["predictions"][0], expected.numpy()[0], atol=1e-6)


def _png(pixels: np.ndarray, *, ink_dark: bool, fmt: str = "PNG") -> bytes:
    values = (255 - pixels * 255) if ink_dark else pixels * 255
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint8)).resize((56, 56)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_picture_endpoint_reads_dark_ink_on_light_paper(
    api: Running, exported: tuple[Path, np.ndarray, Path]
) -> None:
    _, images, _ = exported
    expected = int(np.argmax(_predict(api, [images[3].tolist()]).json()["predictions"][0]))
    for ink_dark in (True, False):
        response = api.client.post(
            "/v1/models/mnist:digit",
            content=_png(images[3], ink_dark=ink_dark),
            headers={"content-type": "image/png"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["digit"] == expected
        assert len(body["probabilities"]) == 10
        assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)


BAD_REQUESTS: dict[str, tuple[str, bytes, int, str]] = {
    "malformed JSON": (":predict", b'{"instances": [', 400, "not valid JSON"),
    "no instances": (":predict", b'{"inputs": []}', 400, 'send {"instances"'),
    "empty instances": (":predict", b'{"instances": []}', 400, "non-empty list"),
    "wrong shape": (":predict", b'{"instances": [[0.1, 0.2, 0.3]]}', 400, "expected [28, 28]"),
    "strings": (":predict", b'{"instances": ["seven"]}', 400, "must be numbers"),
    "booleans": (":predict", b'{"instances": [[true, false]]}', 400, "true/false"),
    "NaN": (":predict", b'{"instances": [[NaN]]}', 400, "NaN"),
    "infinity": (":predict", b'{"instances": [[Infinity]]}', 400, "NaN and infinity"),
    "0-255 pixels": (
        ":predict",
        ('{"instances": [' + str([[255] * 28] * 28) + "]}").encode(),
        400,
        "scale pixels",
    ),
    "too many instances": (
        ":predict",
        ('{"instances": ' + str([[[0] * 28] * 28] * 300) + "}").encode(),
        413,
        "at most 256",
    ),
    "undecodable picture": (":digit", b"not a picture", 400, "not a readable PNG or JPEG"),
    "empty picture": (":digit", b"", 400, "send the picture"),
    "unknown method": (":explain", b"{}", 404, "use :predict or :digit"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(
    api: Running, case: str, exported: tuple[Path, np.ndarray, Path]
) -> None:
    method, body, status, fragment = BAD_REQUESTS[case]
    response = api.client.post(f"/v1/models/mnist{method}", content=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    _, images, _ = exported
    assert _predict(api, [images[0].tolist()]).status_code == 200


def test_unknown_model_is_404(api: Running) -> None:
    response = api.client.post("/v1/models/resnet:predict", json={"instances": []})
    assert response.status_code == 404
    assert "this server serves 'mnist'" in response.json()["error"]
    assert api.client.get("/v1/models/resnet").status_code == 404


def test_oversized_body_is_refused(base: Path) -> None:
    with Running(base, max_body_bytes=1000) as small:
        response = small.client.post("/v1/models/mnist:predict", content=b"x" * 5000)
        assert response.status_code == 413
        assert "limit is 1000" in response.json()["error"]
        assert small.client.get("/healthz").status_code == 200


def test_a_gif_is_refused(api: Running, exported: tuple[Path, np.ndarray, Path]) -> None:
    _, images, _ = exported
    response = api.client.post(
        "/v1/models/mnist:digit", content=_png(images[0], ink_dark=True, fmt="GIF")
    )
    assert response.status_code == 400
    assert "send PNG or JPEG" in response.json()["error"]


def test_new_version_is_picked_up_while_requests_are_in_flight(
    api: Running, base: Path, exported: tuple[Path, np.ndarray, Path]
) -> None:
    _, images, second = exported
    [first] = [p.name for p in base.iterdir()]
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=str(api.client.base_url), timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    "/v1/models/mnist:predict", json={"instances": [images[1].tolist()]}
                )
                statuses.append(response.status_code)
                versions.append(response.headers.get("x-model-version", ""))

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(hammer) for _ in range(4)]
        try:
            time.sleep(0.5)
            staging = base / f".tmp-{second.name}"
            shutil.copytree(second, staging)
            staging.rename(base / second.name)  # how the trainer and promote publish a version
            deadline = time.monotonic() + 90
            while api.client.get("/readyz").json().get("model_version") != second.name:
                assert time.monotonic() < deadline, "new version never served"
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop.set()  # the hammering threads must end, whatever happened above
        for worker in workers:
            worker.result()
    assert statuses
    assert set(statuses) == {200}
    assert versions[0] == first
    assert versions[-1] == second.name


def test_a_broken_version_is_rejected_and_the_old_one_keeps_serving(
    api: Running, base: Path, exported: tuple[Path, np.ndarray, Path]
) -> None:
    _, images, _ = exported
    [first] = [p.name for p in base.iterdir()]
    broken = base / str(int(first) + 10)
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"garbage")
    deadline = time.monotonic() + 30
    while "inference_model_load_failures_total 1.0" not in api.client.get("/metrics").text:
        assert time.monotonic() < deadline, "broken version never tried"
        time.sleep(0.1)
    response = _predict(api, [images[0].tolist()])
    assert response.status_code == 200
    assert response.headers["x-model-version"] == first


def test_concurrent_requests_are_batched_and_measured(
    api: Running, exported: tuple[Path, np.ndarray, Path]
) -> None:
    _, images, _ = exported
    body = {"instances": [images[2].tolist()]}
    with ThreadPoolExecutor(16) as pool:
        responses = list(
            pool.map(lambda _: api.client.post("/v1/models/mnist:predict", json=body), range(64))
        )
    assert {r.status_code for r in responses} == {200}
    metrics = api.client.get("/metrics").text
    sizes = api.app.state.service.metrics.batch_size
    assert sizes._sum.get() >= 64
    calls = [line for line in metrics.splitlines() if line.startswith("inference_batch_size_count")]
    assert float(calls[0].split()[-1]) < 64, "every request was a model call of its own"
    assert 'inference_requests_total{route="predict",status="200"}' in metrics
    assert "inference_request_duration_seconds_bucket" in metrics
    assert "inference_model_version" in metrics


def test_no_model_yet_means_not_ready_then_ready(
    tmp_path: Path, exported: tuple[Path, np.ndarray, Path]
) -> None:
    first, images, _ = exported
    base = tmp_path / "empty"
    with Running(base, poll_seconds=0.2) as running:
        assert running.client.get("/readyz").status_code == 503
        response = running.client.post(
            "/v1/models/mnist:predict", json={"instances": [images[0].tolist()]}
        )
        assert response.status_code == 503
        shutil.copytree(first, base / first.name)
        deadline = time.monotonic() + 30
        while running.client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch-size", "0"], "must be at least 1"),
        (["--batch-timeout-ms", "-1"], "must not be negative"),
        (["--port", "http"], "is not a whole number"),
    ],
)
def test_bad_flags_are_refused(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parse_args(["--model-base-path", "/tmp", "--model-name", "mnist", *flags])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def _requests_counted(api: Running) -> dict[tuple[str, str], float]:
    """inference_requests_total by (route, status), as /metrics exposes it."""
    counted: dict[tuple[str, str], float] = {}
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith("inference_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            counted[(labels["route"], labels["status"])] = float(line.split()[-1])
    return counted


def test_probes_are_not_counted_as_requests(tmp_path: Path) -> None:
    """The kubelet's probes are not traffic: counted, they would dilute the error rate (and a
    server waiting for its first version would count its readiness 503s as failed requests)."""
    with Running(tmp_path / "empty", poll_seconds=60) as running:
        for _ in range(5):
            assert running.client.get("/readyz").status_code == 503
            assert running.client.get("/healthz").status_code == 200
        predict = running.client.post(
            "/v1/models/mnist:predict", json={"instances": [np.zeros((28, 28)).tolist()]}
        )
        assert predict.status_code == 503
        assert _requests_counted(running) == {(PREDICT, "503"): 1.0}
        assert PREDICT in PREDICTION_ROUTES


def test_a_model_failing_on_a_batch_is_a_counted_500_and_the_server_keeps_serving(
    tmp_path: Path,
) -> None:
    """A version that loads but fails on real batches is the server's failure: a 500 in TF
    Serving's error shape, counted for the error-rate alert (infra/alerts.py), not a bare
    framework 500 that /metrics never sees."""
    base = tmp_path / "mnist"
    export_batch_of_one(base)
    with Running(base, poll_seconds=60) as running:
        two = _predict(running, [np.zeros((28, 28)).tolist()] * 2)
        assert two.status_code == 500
        assert "the model failed" in two.json()["error"]
        one = _predict(running, [np.zeros((28, 28)).tolist()])
        assert one.status_code == 200
        assert _requests_counted(running) == {(PREDICT, "500"): 1.0, (PREDICT, "200"): 1.0}
