"""Throughput and latency of the inference API with dynamic batching on and off.

Starts the API twice on loopback, on the same exported model: with batching (max batch 32) and
without (`--max-batch-size 1`), and drives each with the same load: 32 concurrent clients, each
sending one image per request, one request at a time.  Prints requests per second, p50 and p99
latency for both, and the throughput ratio.

    python -m benchmarks.serving_bench [--clients 32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from training import train as trainer
from training.sample_data import mnist_npz

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Result:
    label: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(base: Path, max_batch: int) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inference.server",
            "--model-base-path",
            str(base),
            "--model-name",
            "mnist",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-batch-size",
            str(max_batch),
            "--batch-timeout-ms",
            "5",
        ],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the inference API did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _client(host: str, port: int, request: bytes, stop: float, latencies: list[float]) -> int:
    """One keep-alive connection sending `request` back to back until `stop`; returns errors.

    A bare HTTP/1.1 client: a general-purpose one costs more CPU per request than the server
    under test, and would measure itself.
    """
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
    finally:
        writer.close()
    return errors


async def drive(url: str, body: bytes, clients: int, seconds: float) -> tuple[list[float], int]:
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    errors = await asyncio.gather(
        *(_client(host, int(port), request, stop, latencies) for _ in range(clients))
    )
    return latencies, sum(errors)


def measure(
    label: str, base: Path, max_batch: int, *, body: bytes, clients: int, seconds: float
) -> Result:
    with serving(base, max_batch) as url:
        asyncio.run(drive(url, body, clients, 1.0))  # warm up
        started = time.perf_counter()
        latencies, errors = asyncio.run(drive(url, body, clients, seconds))
        elapsed = time.perf_counter() - started
    millis = np.array(latencies) * 1000
    return Result(
        label,
        len(latencies),
        elapsed,
        float(np.percentile(millis, 50)),
        float(np.percentile(millis, 99)),
        errors,
    )


def export_model(out: Path) -> Path:
    trainer.train(mnist_npz(), out / "mnist", trainer.Run(epochs=1), log=lambda *_: None)
    return out / "mnist"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    image = (np.random.default_rng(0).random((28, 28)) * 0.5).tolist()
    body = json.dumps({"instances": [image]}).encode()
    with tempfile.TemporaryDirectory() as out:
        base = export_model(Path(out))
        results = [
            measure(label, base, max_batch, body=body, clients=args.clients, seconds=args.seconds)
            for label, max_batch in (
                ("batching off (--max-batch-size 1)", 1),
                ("batching on (--max-batch-size 32)", 32),
            )
        ]
    print(f"inference API, {args.clients} concurrent clients, one image per request, loopback:")
    for result in results:
        print(
            f"  {result.label:36} {result.rps:8.1f} req/s  p50 {result.p50_ms:6.1f} ms  "
            f"p99 {result.p99_ms:6.1f} ms  errors {result.errors}"
        )
    print(f"  throughput ratio (on/off): {results[1].rps / results[0].rps:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
