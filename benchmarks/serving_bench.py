"""The inference API on loopback: batching, the HTTP stack's ceiling, and overload.

Exports one model, then, in this one run:

- at `--clients` (32) concurrent keep-alive clients, each sending one image per request, one
  request at a time: the API with batching off (`--max-batch-size 1`) and on (32), and the
  HTTP stack's ceiling (benchmarks/ceiling.py: the same FastAPI and uvicorn, a handler that
  parses the same body and answers a constant).  The API and the ceiling are measured in
  alternating rounds and the best round of each is kept, so a burst of other work on the
  machine does not decide the ratio.
- at `--overload-clients` (1,000) concurrent keep-alive clients, each sending its next request as
  soon as it has an answer, or, after a 503, once the `Retry-After` it was given has passed (plus
  up to half as much again at random, so clients shed together do not all come back together):
  what is served (rate, p50 and p99 latency), the share shed with 503 and how fast a 503 comes,
  any other answer or failure, and the growth of the server's resident memory over the run.

Batching off is measured with a queue budget no request reaches (`--max-queue-ms 60000`): it
compares throughput, which shedding would hide.

    python -m benchmarks.serving_bench [--clients 32] [--seconds 10] [--overload-clients 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from training import train as trainer
from training.sample_data import mnist_npz

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Tally:
    """What one load run got back."""

    seconds: float = 0.0
    served: list[float] = field(default_factory=list)  # latency of each 200, seconds
    shed_latency: list[float] = field(default_factory=list)  # of each 503
    other: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def shed(self) -> int:
        return len(self.shed_latency)

    @property
    def answered(self) -> int:
        return len(self.served) + self.shed + sum(self.other.values())

    @property
    def rps(self) -> float:
        return len(self.served) / self.seconds

    def line(self) -> str:
        return (
            f"{self.rps:8.1f} req/s  p50 {_ms(self.served, 50):6.1f} ms  "
            f"p99 {_ms(self.served, 99):6.1f} ms"
        )


def _ms(latencies: list[float], q: float) -> float:
    return float(np.percentile(np.array(latencies) * 1000, q)) if latencies else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(command: list[str]) -> Iterator[tuple[str, int]]:
    """Run a server (`command` plus --host and --port); yield its URL and pid once ready."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", *command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(command[:1])} did not become ready")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def api_command(base: Path, max_batch: int, *options: str) -> list[str]:
    return [
        "inference.server",
        "--model-base-path",
        str(base),
        "--model-name",
        "mnist",
        "--max-batch-size",
        str(max_batch),
        "--batch-timeout-ms",
        "5",
        *options,
    ]


async def _client(host: str, port: int, request: bytes, stop: float, tally: Tally) -> None:
    """One keep-alive connection sending `request` back to back until `stop`.

    A bare HTTP/1.1 client: a general-purpose one costs more CPU per request than the server
    under test, and would measure itself.
    """
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as error:
        tally.other[f"connect: {type(error).__name__}"] += 1
        return
    try:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length, retry_after = 0, 0.0
            for line in head.split(b"\r\n"):
                name = line.lower()
                if name.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                elif name.startswith(b"retry-after:"):
                    retry_after = float(line.split(b":", 1)[1])
            await reader.readexactly(length)
            status = head[9:12]
            if status == b"200":
                tally.served.append(time.perf_counter() - started)
            elif status == b"503":
                tally.shed_latency.append(time.perf_counter() - started)
                pause = retry_after * random.uniform(1.0, 1.5)
                await asyncio.sleep(min(pause, max(stop - time.perf_counter(), 0)))
            else:
                tally.other[status.decode()] += 1
    except (OSError, asyncio.IncompleteReadError) as error:
        tally.other[type(error).__name__] += 1
    finally:
        writer.close()


async def _drive(url: str, body: bytes, clients: int, seconds: float) -> Tally:
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    tally = Tally()
    started = time.perf_counter()
    stop = started + seconds
    await asyncio.gather(*(_client(host, int(port), request, stop, tally) for _ in range(clients)))
    tally.seconds = time.perf_counter() - started
    return tally


def drive(url: str, body: bytes, clients: int, seconds: float) -> Tally:
    asyncio.run(_drive(url, body, clients, 1.0))  # warm up: connections, first batches
    return asyncio.run(_drive(url, body, clients, seconds))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextlib.contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """Samples the process's resident memory every 50 ms while the block runs."""
    samples = [rss_bytes(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            samples.append(rss_bytes(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()
        samples.append(rss_bytes(pid))


def export_model(out: Path) -> Path:
    trainer.train(mnist_npz(), out / "mnist", trainer.Run(epochs=1), log=lambda *_: None)
    return out / "mnist"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating API/ceiling rounds")
    parser.add_argument("--overload-clients", type=int, default=1000)
    parser.add_argument("--overload-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    image = (np.random.default_rng(0).random((28, 28)) * 0.5).tolist()
    body = json.dumps({"instances": [image]}).encode()
    load = {"body": body, "clients": args.clients, "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as out:
        base = export_model(Path(out))
        with serving(api_command(base, 1, "--max-queue-ms", "60000")) as (url, _):
            unbatched = drive(url, **load)
        with (
            serving(api_command(base, 32)) as (url, pid),
            serving(["benchmarks.ceiling"]) as (ceiling_url, _),
        ):
            rounds = [(drive(url, **load), drive(ceiling_url, **load)) for _ in range(args.rounds)]
            api = max((r[0] for r in rounds), key=lambda t: t.rps)
            ceiling = max((r[1] for r in rounds), key=lambda t: t.rps)
            with peak_rss(pid) as samples:
                overload = drive(url, body, args.overload_clients, args.overload_seconds)
    print(f"inference API, {args.clients} concurrent keep-alive clients, one image per request:")
    for label, tally in (
        ("HTTP stack ceiling (constant answer)", ceiling),
        ("batching off (--max-batch-size 1)", unbatched),
        ("batching on (--max-batch-size 32)", api),
    ):
        print(f"  {label:38} {tally.line()}  503 {tally.shed}  other {sum(tally.other.values())}")
    print(f"  batching on/off: {api.rps / unbatched.rps:.1f}x")
    print(f"  API at {api.rps / ceiling.rps:.0%} of the HTTP stack's ceiling")
    answered = overload.answered
    print(f"inference API under overload, {args.overload_clients} concurrent keep-alive clients:")
    print(f"  served  {overload.line()}")
    print(
        f"  shed    {overload.shed / max(answered, 1):.1%} of {answered} answers (503), "
        f"answered in p50 {_ms(overload.shed_latency, 50):.1f} ms, "
        f"p99 {_ms(overload.shed_latency, 99):.1f} ms"
    )
    print(f"  other   {dict(overload.other) or 'none'}")
    growth = (max(samples) - samples[0]) / 2**20
    print(f"  server memory growth {growth:.0f} MB (resident, peak over the run's start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
