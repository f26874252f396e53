"""Dynamic batching: concurrent requests are merged into one model call.

A request's instances wait in a queue; a single worker takes what is queued, up to
`max_batch_size` instances or until `timeout` has passed since the first one, runs the model once
on the whole batch (in a thread, so the event loop keeps accepting requests) and hands each
request its slice.  With `max_batch_size` 1 every request is a model call of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from inference.model_store import LoadedModel


@dataclass
class _Pending:
    instances: np.ndarray
    future: asyncio.Future[tuple[np.ndarray, int]] = field(repr=False)


class NoModel(RuntimeError):
    pass


class Batcher:
    def __init__(
        self,
        model: Callable[[], LoadedModel | None],
        *,
        max_batch_size: int,
        timeout_s: float,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._model = model
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def predict(self, instances: np.ndarray) -> tuple[np.ndarray, int]:
        """Probabilities for `instances` and the model version that computed them."""
        future: asyncio.Future[tuple[np.ndarray, int]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(instances, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        first = await self._queue.get()
        batch, size = [first], len(first.instances)
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while size < self.max_batch_size:
            if self._queue.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            if size + len(item.instances) > self.max_batch_size:
                await self._requeue_front(item)
                break
            batch.append(item)
            size += len(item.instances)
        return batch

    async def _requeue_front(self, item: _Pending) -> None:
        # Keep arrival order: the item that did not fit goes first into the next batch.
        rest = [item]
        while not self._queue.empty():
            rest.append(self._queue.get_nowait())
        for pending in rest:
            self._queue.put_nowait(pending)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            model = self._model()
            if model is None:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(NoModel("no model version is loaded yet"))
                continue
            inputs = np.concatenate([p.instances for p in batch])
            self._on_batch(len(inputs))
            try:
                outputs = await loop.run_in_executor(None, model.predict, inputs)
            except Exception as error:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            start = 0
            for pending in batch:
                end = start + len(pending.instances)
                if not pending.future.done():
                    pending.future.set_result((outputs[start:end], model.version))
                start = end
