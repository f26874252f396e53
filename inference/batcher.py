"""Dynamic batching with admission control: concurrent requests merged into one model call, and
a queue bounded in time.

A request's instances wait in a FIFO queue; a single worker takes what is queued, up to
`max_batch_size` instances or until `timeout` has passed since the oldest one arrived, runs the
model once on the whole batch (in a thread, so the event loop keeps accepting requests) and hands
each request its slice.  With `max_batch_size` 1 every request is a model call of its own.

The queue is bounded by time, `max_queue_s`, rather than by count: what a caller feels is the
wait, and how many requests fit in it depends on the model and the machine.  A request is shed
(`Shed`, answered 503 by the API, as TF Serving answers UNAVAILABLE when its batch queue is full):

- at once, when the batches already queued ahead of it would take longer than the budget to run,
  by the recent time of a model call;
- at the end of its budget, if it is still waiting then (a model call that stalls, a slower
  new version): no request waits in the queue longer than the budget.

A request whose client has gone before its batch starts is dropped (`Gone`): nobody would read
the answer, and computing it would delay the requests that are still wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from inference.model_store import LoadedModel

Result = tuple[np.ndarray, int]

# How much each model call moves the running estimate of a call's duration: enough to follow a
# new model version within a few dozen batches, not so much that one slow call sheds a burst.
_SMOOTHING = 0.1
# How often the event loop's lag is sampled: a timer's lateness is how long any callback, the
# worker that starts batches included, waits for the loop.
_TICK_S = 0.01


class NoModel(RuntimeError):
    pass


class Shed(RuntimeError):
    """The request could not start within the queue budget; the client should retry later."""


class Gone(RuntimeError):
    """The client went away before the request's batch started; it was not computed."""


class _Pending:
    __slots__ = ("enqueued", "future", "instances", "size", "waiting")

    def __init__(self, instances: np.ndarray, future: asyncio.Future[Result], now: float) -> None:
        self.instances = instances
        self.size = len(instances)
        self.future = future
        self.enqueued = now
        # In the queue and counted in `queued`; off it once taken into a batch (from then on it
        # is computed, whatever happens), shed, dropped or cancelled.
        self.waiting = True


class Batcher:
    def __init__(
        self,
        model: Callable[[], LoadedModel | None],
        *,
        max_batch_size: int,
        timeout_s: float,
        max_queue_s: float = math.inf,
        on_batch: Callable[[int], None] = lambda size: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._model = model
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.max_queue_s = max_queue_s
        self._on_batch = on_batch
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._queued = 0  # instances waiting (shed and dropped ones are taken off at once)
        self._wake: asyncio.Future[None] | None = None
        self._wake_at = 1  # queued instances that wake the worker: 1 idle, a full batch filling
        self._expiry: asyncio.TimerHandle | None = None
        # Recent time from one batch's start to the next's while requests were backlogged: the
        # rate the queue really drains at, the event loop's share included; at least the model
        # call's own time.
        self._cycle_s = 0.0
        self._backlogged = False
        self._last_start: float | None = None
        self._call_s = 0.0  # recent duration of one model call; 0 until the first
        self._running_since: float | None = None
        self._lag_s = 0.0  # recent event-loop lag
        self._ticker: asyncio.TimerHandle | None = None
        self._worker: asyncio.Task[None] | None = None
        # One thread: one batch runs at a time, and the model's own ops use the cores.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="model")

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._worker = loop.create_task(self._run())
        self._ticker = loop.call_later(_TICK_S, self._tick, loop, self._clock() + _TICK_S)

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = self._clock()
        self._lag_s = _smooth(self._lag_s, max(now - due, 0.0))
        self._ticker = loop.call_later(_TICK_S, self._tick, loop, now + _TICK_S)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for timer in (self._expiry, self._ticker):
            if timer is not None:
                timer.cancel()
        self._executor.shutdown(wait=False)

    def expected_wait(self, instances: int) -> float:
        """Seconds until a batch holding `instances` more would start: the batches ahead at the
        recent pace, the rest of the one running, and the event loop's lag (under overload the
        loop itself is the queue: the worker waits for it like every request)."""
        ahead = (self._queued + instances - 1) // self.max_batch_size
        wait = ahead * max(self._cycle_s, self._call_s) + self._lag_s
        if self._running_since is not None:
            wait += max(self._call_s - (self._clock() - self._running_since), 0.0)
        return wait

    @property
    def queued(self) -> int:
        """Instances waiting for a batch."""
        return self._queued

    def admits(self, instances: int = 1) -> bool:
        return self.expected_wait(instances) <= self.max_queue_s

    async def predict(
        self, instances: np.ndarray, gone: asyncio.Future[Any] | None = None
    ) -> Result:
        """Probabilities for `instances` and the model version that computed them.

        Raises `Shed` when the request cannot start within the queue budget, and `Gone` when
        `gone` completes (the client disconnected) before the request's batch has started.
        """
        if not self.admits(len(instances)):
            raise Shed(self.over_budget())
        loop = asyncio.get_running_loop()
        pending = _Pending(instances, loop.create_future(), self._clock())
        self._queue.append(pending)
        self._queued += pending.size
        if self._queued >= self._wake_at and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        if self._expiry is None and self.max_queue_s != math.inf:
            self._arm_expiry(loop)
        if gone is not None:
            gone.add_done_callback(lambda _: self._drop(pending, Gone("the client went away")))
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._leave(pending)  # the request's task was cancelled (shutdown): not counted
            raise

    def over_budget(self) -> str:
        return (
            f"the server is at capacity: this request would wait over its "
            f"{self.max_queue_s * 1000:g} ms queue budget"
        )

    def _leave(self, pending: _Pending) -> bool:
        """Take a request off the queue's count (lazily off the queue: the worker skips it)."""
        if not pending.waiting:
            return False
        pending.waiting = False
        self._queued -= pending.size
        return True

    def _drop(self, pending: _Pending, why: Exception) -> None:
        if self._leave(pending) and not pending.future.done():
            pending.future.set_exception(why)

    def _arm_expiry(self, loop: asyncio.AbstractEventLoop) -> None:
        # One timer for the whole queue, at the oldest request's deadline: deadlines come in
        # arrival order, so expiring from the front is enough, and a timer per request would
        # cost more than the request.
        while self._queue and not self._queue[0].waiting:
            self._queue.popleft()
        if not self._queue:
            self._expiry = None
            return
        delay = self._queue[0].enqueued + self.max_queue_s - self._clock()
        self._expiry = loop.call_later(max(delay, 0.0), self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        now = self._clock()
        while self._queue and self._queue[0].enqueued + self.max_queue_s <= now:
            self._drop(self._queue.popleft(), Shed(self.over_budget()))
        self._arm_expiry(loop)

    async def _collect(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        self._wake_at = 1
        while self._queued == 0:
            self._wake = loop.create_future()
            await self._wake
        self._backlogged = self._queued >= self.max_batch_size
        self._wake_at = self.max_batch_size
        # Wait for a full batch, or until the oldest request has waited `timeout`.
        if self._queued < self.max_batch_size and self.timeout_s > 0:
            oldest = next(p for p in self._queue if p.waiting)
            delay = oldest.enqueued + self.timeout_s - self._clock()
            while self._queued < self.max_batch_size and delay > 0:
                self._wake = loop.create_future()
                timer = loop.call_later(delay, _resolve, self._wake)
                await self._wake
                timer.cancel()
                delay = oldest.enqueued + self.timeout_s - self._clock()
        batch: list[_Pending] = []
        size = 0
        while self._queue:
            pending = self._queue[0]
            if not pending.waiting:
                self._queue.popleft()
                continue
            if batch and size + pending.size > self.max_batch_size:
                break  # it stays first in line for the next batch
            self._queue.popleft()
            self._leave(pending)
            batch.append(pending)
            size += pending.size
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue  # every waiting request was shed or dropped meanwhile
            model = self._model()
            if model is None:
                for pending in batch:
                    _fail(pending, NoModel("no model version is loaded yet"))
                continue
            inputs = (
                batch[0].instances
                if len(batch) == 1
                else np.concatenate([p.instances for p in batch])
            )
            self._on_batch(len(inputs))
            self._running_since = started = self._clock()
            if self._backlogged and self._last_start is not None:
                self._cycle_s = _smooth(self._cycle_s, started - self._last_start)
            self._last_start = started
            try:
                outputs = await loop.run_in_executor(self._executor, model.predict, inputs)
            except Exception as error:
                for pending in batch:
                    _fail(pending, error)
                continue
            finally:
                self._running_since = None
            self._call_s = _smooth(self._call_s, self._clock() - started)
            start = 0
            for pending in batch:
                end = start + pending.size
                if not pending.future.done():
                    pending.future.set_result((outputs[start:end], model.version))
                start = end


def _smooth(average: float, sample: float) -> float:
    return sample if average == 0 else average + _SMOOTHING * (sample - average)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(pending: _Pending, error: Exception) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)
