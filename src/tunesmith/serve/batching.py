"""The dynamic batcher: requests wait in a bounded queue; one worker thread takes the first, collects whatever
else arrives within a short window (up to a maximum batch size, counted by `size`, e.g. texts), and runs them
in one call of `run_batch` (one forward pass). A full queue refuses at once (the app answers 503).

Batching off: window 0 and max batch 1 (every request its own pass). Generation uses a batcher too: its
`run_batch` shares generate calls among greedy non-streaming requests and runs the others one by one. When a
batch of several requests fails, each is run again alone, so one bad request fails by itself and the others
still get their answers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

log = logging.getLogger("tunesmith.serve")

STOP = object()


class QueueFull(Exception):
    """The batcher's queue holds its maximum of waiting requests."""


class Batcher:
    def __init__(self, run_batch: Callable[[list], list], *, window_ms: float = 0.0, max_batch: int = 32,
                 max_queue: int = 256, size: Callable[[Any], int] = lambda item: 1,
                 on_batch: Callable[[int, int], None] = lambda requests, size: None, name: str = "batcher"):
        self.run_batch, self.size, self.on_batch = run_batch, size, on_batch
        self.window_s, self.max_batch = max(window_ms, 0.0) / 1000.0, max(max_batch, 1)
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.carry = None  # an item taken from the queue that did not fit the last batch
        self.thread = threading.Thread(target=self.loop, name=name, daemon=True)

    def start(self) -> "Batcher":
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.thread.is_alive():
            try:
                self.queue.put(STOP, timeout=timeout)  # waits only while the queue is full
            except queue.Full:
                return  # a worker stuck in a forward pass: it is a daemon thread, the process ends anyway
            self.thread.join(timeout)

    def depth(self) -> int:
        return self.queue.qsize() + (self.carry is not None)

    def submit(self, item) -> Future:
        future: Future = Future()
        try:
            self.queue.put_nowait((item, future))
        except queue.Full:
            raise QueueFull() from None
        return future

    def loop(self) -> None:
        while True:
            batch = self.collect()
            if batch is None:
                return
            self.run(batch)

    def collect(self) -> list | None:
        """The next batch: the first waiting item, then whatever arrives within the window and fits."""
        first = self.carry if self.carry is not None else self.queue.get()
        self.carry = None
        if first is STOP:
            return None
        batch, total = [first], self.size(first[0])
        deadline = time.monotonic() + self.window_s
        while total < self.max_batch:
            wait = deadline - time.monotonic()
            try:
                entry = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if entry is STOP or total + self.size(entry[0]) > self.max_batch:
                self.carry = entry  # the next batch starts with it (STOP: after this batch)
                break
            batch.append(entry)
            total += self.size(entry[0])
        return batch

    def run(self, batch: list) -> None:
        live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
        if not live:
            return
        items = [item for item, _ in live]
        try:
            self.on_batch(len(items), sum(self.size(item) for item in items))
            results = self.run_batch(items)
        except Exception as exc:  # noqa: BLE001 - reported to each request; the worker keeps going
            if len(live) > 1:  # find the request at fault: each alone
                for entry in live:
                    retry: Future = Future()
                    self.run([(entry[0], retry)])
                    copy_result(retry, entry[1])
                return
            log.exception("a batch failed")
            live[0][1].set_exception(exc)
            return
        for (_, future), result in zip(live, results):
            future.set_result(result)


def copy_result(source: Future, target: Future) -> None:
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())
