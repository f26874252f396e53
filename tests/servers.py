"""Helpers for tests that run the inference API on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn

from inference.app import Config, create_app
from inference.model_store import Predict, load_version


class Running:
    def __init__(
        self,
        base: Path,
        model_name: str = "mnist",
        loader: Callable[[Path], Predict] = load_version,
        **options: float,
    ) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # The client threads share the server's process (and a busy test machine): a request
        # may wait far longer than in service, and only the tests about shedding should shed.
        options.setdefault("max_queue_ms", 60_000.0)
        config = Config(model_base_path=base, model_name=model_name, **options)  # type: ignore[arg-type]
        self.app = create_app(config, loader)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
