"""Dynamic batching: requests that arrive together run as one batch.

`collect_batch` is the one place batches form. It never waits when nothing else is on its way,
so an idle server adds no delay; under load it takes everything queued, and waits up to
`max_delay` for requests that have arrived but are still being decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import ModelError, Overloaded, Timeout

log = logging.getLogger("fermion.server")


class Completion(Protocol):
    """Where a request's answer goes: an asyncio future, or anything that reads like one.

    The HTTP hot path answers through an object with these three methods that encodes the
    result and writes it to the connection, with no future and no coroutine per request.
    """

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


@dataclass(eq=False, slots=True)
class Work:
    """One request's item waiting for a batch, where its answer goes, and when it was queued
    (`time.perf_counter_ns`)."""

    item: Any
    rows: int
    future: Completion = field(repr=False)
    queued_ns: int = 0


class WorkQueue:
    """A bounded FIFO of Work with an awaitable "not empty", and a count of arrivals in decode."""

    def __init__(self, limit: int, model: str) -> None:
        self.limit = limit
        self.model = model
        self.arriving = 0
        self._items: deque[Work] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, work: Work) -> None:
        if len(self._items) >= self.limit:
            raise Overloaded(self.model, len(self._items))
        self._items.append(work)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float | None = None) -> None:
        """Return once an item is queued, or after `timeout` seconds."""
        if self._items:
            return
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _release, self._waiter)
        try:
            await self._waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def take(self, max_rows: int, rows: int) -> tuple[list[Work], int]:
        """Pop items in order while they fit in `max_rows`; skip those already answered."""
        taken: list[Work] = []
        items = self._items
        while items:
            work = items[0]
            if work.future.done():  # timed out while queued
                items.popleft()
                continue
            if rows and rows + work.rows > max_rows:
                break
            items.popleft()
            taken.append(work)
            rows += work.rows
        return taken, rows


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def collect_batch(queue: WorkQueue, max_size: int, max_delay: float) -> list[Work]:
    """The next batch: at least one item, at most `max_size` rows.

    Waits for a first item; takes whatever else is queued; then, only while requests are still
    arriving (being decoded) and the batch has room, waits for them until `max_delay` seconds
    after the first item.
    """
    while True:
        await queue.wait()
        batch, rows = queue.take(max_size, 0)
        if batch:
            break
    if rows >= max_size or max_delay <= 0:
        return batch
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_delay
    while rows < max_size and queue.arriving > 0:
        left = deadline - loop.time()
        if left <= 0:
            break
        await queue.wait(left)
        more, rows = queue.take(max_size, rows)
        batch.extend(more)
        if not more and len(queue):  # the next item does not fit: this batch is full
            break
    return batch


class Batcher:
    """Feeds batches from a WorkQueue through `predict`, and answers each request's future."""

    def __init__(
        self,
        model: str,
        predict: Callable[[list[Any]], list[Any]],
        *,
        max_batch_size: int,
        max_delay_s: float,
        queue_limit: int,
        executor: Executor | None,
        observe_batch: Callable[[Sequence[Work], int, int], None] = lambda *_: None,
    ) -> None:
        self.model = model
        self.queue = WorkQueue(queue_limit, model)
        self._predict = predict
        self._max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self._executor = executor
        self._observe_batch = observe_batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"batcher-{self.model}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, item: Any, rows: int, timeout_s: float) -> Any:
        """Queue one item and wait for its result; 504 after `timeout_s`, 429 when full."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        timer = self.enqueue(item, rows, future, timeout_s)
        try:
            return await future
        finally:
            timer.cancel()

    def enqueue(
        self, item: Any, rows: int, answer: Completion, timeout_s: float
    ) -> asyncio.TimerHandle:
        """Queue one item whose result goes to `answer`; 429 when full. The returned timer
        answers 504 after `timeout_s`; cancel it once answered."""
        self.queue.put(Work(item, rows, answer, time.perf_counter_ns()))
        return asyncio.get_running_loop().call_later(timeout_s, _expire, answer, timeout_s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await collect_batch(self.queue, self._max_batch_size, self._max_delay_s)
            live = [w for w in batch if not w.future.done()]
            if not live:
                continue
            items = [w.item for w in live]
            started = time.perf_counter_ns()
            try:
                if self._executor is None:
                    results = self._predict(items)
                else:
                    results = await loop.run_in_executor(self._executor, self._predict, items)
                finished = time.perf_counter_ns()
                if len(results) != len(live):
                    raise ValueError(
                        f"predict returned {len(results)} results for a batch of {len(live)}"
                    )
            except Exception as exc:  # a model may raise anything
                # Each request of the batch gets a 500 that names the error; the server goes on.
                log.exception("model %r failed on a batch of %d", self.model, len(live))
                error = ModelError(self.model, exc)
                for work in live:
                    if not work.future.done():
                        work.future.set_exception(error)
                continue
            self._observe_batch(live, started, finished)
            for work, result in zip(live, results, strict=True):
                if not work.future.done():
                    work.future.set_result(result)


def _expire(future: Completion, timeout_s: float) -> None:
    if not future.done():
        future.set_exception(Timeout(timeout_s))
