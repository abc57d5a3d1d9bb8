"""Feeding one model from many request threads: ``MicroBatcher`` (continuous batching with a
streaming model, rounds of ``generate`` otherwise), the order in which waiting requests are admitted
(``Schedule``: first come first served, or shortest predicted first with an age bound), cancellation
of requests whose client left or whose time ran out, and failures kept to the request that caused
them."""

from __future__ import annotations

import functools
import itertools
import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from reactlab.types import LLM, Completion, GenParams, Prompt, StreamingLLM

log = logging.getLogger("reactlab.serve")


@dataclass
class _Item:
    prompt: Prompt
    params: GenParams
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    on_text: Callable[[str], None] | None = None  # streaming: the text so far, after each step
    cost: float = 0.0  # the schedule's predicted cost, computed once at enqueue
    t_enq: float = field(default_factory=time.monotonic)


Cost = Callable[[Prompt, GenParams], float]


@dataclass(frozen=True)
class Schedule:
    """Which waiting request the batcher admits next, whenever more wait than the batch has free
    slots. ``cost`` None: first come, first served (the default). Otherwise shortest predicted job
    first: ``cost(prompt, params)`` is computed once per prompt when it is queued (in the request's
    thread), and the cheapest waiting prompt is admitted first, ties by arrival. The age bound keeps
    a long request from starving behind a stream of short ones: once the longest-waiting prompt has
    waited more than ``max_wait_s``, it is admitted before any other."""

    cost: Cost | None = None
    max_wait_s: float = 30.0

    def pick(self, waiting: Sequence[_Item], now: float) -> int:
        """The index in ``waiting`` (in arrival order, not empty) of the prompt to admit next."""
        if self.cost is None or now - waiting[0].t_enq > self.max_wait_s:
            return 0
        return min(range(len(waiting)), key=lambda i: waiting[i].cost)


class ClientGone(Exception):
    """The client of a request disconnected before its completion was ready."""


class ShuttingDown(RuntimeError):
    """The server stopped before the request's completion was ready (HTTP 503: try again later)."""


class RequestTimeout(Exception):
    """A request ran past the server's per-request time limit (it was cancelled)."""


def _params_key(p: GenParams) -> tuple:
    return (p.max_new_tokens, p.temperature, p.top_p, tuple(p.stop), p.seed)


class MicroBatcher:
    """Feeds prompts from many request threads to the model from one worker thread.

    ``submit(prompts, params, alive)`` blocks until all its completions are back and returns them
    in order. With a streaming model (the local HF engine) each prompt joins the running batch at the
    next decoding step (continuous batching: a short request is not held behind a long one), and a
    prompt whose client went away (``alive()`` false) is cancelled there. With any other model,
    prompts queued within ``batch_window_s`` (up to ``max_batch``) form one ``generate`` call per
    decoding parameters. A streaming model is handed at most ``max_batch`` rows at once (or its
    ``batch_size``, when smaller), a round at most ``max_batch`` prompts; the others wait, and
    ``schedule`` picks which is admitted next. A failed model call reaches only the request that
    caused it: a failed batch is retried request by request.
    """

    def __init__(self, llm: LLM, batch_window_s: float = 0.015, max_batch: int = 32,
                 schedule: Schedule | None = None):
        self.llm = llm
        self.batch_window_s = batch_window_s
        self.max_batch = max_batch
        self.schedule = schedule or Schedule()
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._waiting: list[_Item] = []  # taken off the queue, not yet admitted (the worker's own)
        self._closed = False
        stream = isinstance(llm, StreamingLLM) and hasattr(llm, "cancel")
        self._thread = threading.Thread(target=self._stream_loop if stream else self._loop, name="reactlab-batcher",
                                        daemon=True)
        self._thread.start()

    def submit(self, prompts: list[Prompt], params: GenParams, alive: Callable[[], bool] | None = None,
               timeout_s: float | None = None) -> list[Completion]:
        """The completions of ``prompts``, in order. Raises ``ClientGone`` once ``alive()`` is false
        and ``RequestTimeout`` after ``timeout_s``; the request's prompts are cancelled then."""
        items = self.enqueue(prompts, params)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        out = []
        for item in items:
            while True:
                try:
                    out.append(item.future.result(timeout=0.2))
                    break
                except FutureTimeout:
                    gone = alive is not None and not alive()
                    late = deadline is not None and time.monotonic() > deadline
                    if gone or late:
                        for it in items:
                            it.cancelled.set()
                        raise (ClientGone() if gone else RequestTimeout()) from None
        return out

    def enqueue(self, prompts: list[Prompt], params: GenParams,
                on_text: Callable[[int, str], None] | None = None) -> list[_Item]:
        """Queue ``prompts``; their items (each ``future`` holds the completion). ``on_text(i, text)``
        is called from the worker with prompt ``i``'s text so far after each decoding step (a
        streaming model only; the text may end in a partial stop string)."""
        if self._closed:
            raise ShuttingDown("server is shutting down")
        items = [_Item(p, params, on_text=None if on_text is None else functools.partial(on_text, i))
                 for i, p in enumerate(prompts)]
        for item in items:
            if self.schedule.cost is not None:
                try:
                    cost = float(self.schedule.cost(item.prompt, params))
                except Exception as e:  # noqa: BLE001 - a failed prediction fails its request alone
                    log.exception("the schedule's cost function failed")
                    item.future.set_exception(e)
                    continue
                item.cost = math.inf if math.isnan(cost) else cost
            self._queue.put(item)
        return items

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _gather(self) -> bool:
        """Wait for one prompt unless some already wait, then gather more for ``batch_window_s``
        (until ``max_batch`` wait), then take whatever else is queued; ``True`` means stop."""
        if not self._waiting:
            first = self._queue.get()
            if first is None:
                return True
            self._waiting.append(first)
        deadline = time.monotonic() + self.batch_window_s
        while len(self._waiting) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return True
            self._waiting.append(item)
        return self._drain()

    def _drain(self, block: bool = False) -> bool:
        """Move queued prompts to the waiting list (waiting for one if ``block``); ``True`` means stop."""
        while True:
            try:
                item = self._queue.get(block=block)
            except queue.Empty:
                return False
            if item is None:
                return True
            self._waiting.append(item)
            block = False

    def _admit(self) -> _Item:
        """Take the schedule's pick off the waiting list."""
        return self._waiting.pop(self.schedule.pick(self._waiting, time.monotonic()))

    def _loop(self) -> None:
        stop = False
        while not stop or self._waiting:  # what waited before close() is still served
            if not stop:
                stop = self._gather()
            self._waiting = [it for it in self._waiting if not it.cancelled.is_set()]  # the client left
            groups: dict[tuple, list[_Item]] = {}
            for _ in range(min(self.max_batch, len(self._waiting))):
                item = self._admit()
                groups.setdefault(_params_key(item.params), []).append(item)
            for items in groups.values():
                self._run(items)
        self._fail_queued()

    def _stream_loop(self) -> None:
        llm: Any = self.llm
        pending: dict[int, _Item] = {}
        keys = itertools.count()
        size = getattr(llm, "batch_size", None)
        slots = min(self.max_batch, size) if isinstance(size, int) and size > 0 else self.max_batch
        stop = False
        while not stop or pending:
            # take every queued prompt; wait for one only when there is nothing to do
            stop = self._drain(block=not pending and not self._waiting) or stop
            for item in list(self._waiting):
                if item.cancelled.is_set() or stop:  # the client left, or the server is stopping
                    self._waiting.remove(item)
                    item.future.set_exception(ClientGone() if item.cancelled.is_set() else
                                              ShuttingDown("server is shutting down"))
            free = slots - sum(it.params.n for it in pending.values())
            while free > 0 and self._waiting:
                item = self._admit()
                key = next(keys)
                try:
                    llm.submit(key, item.prompt, item.params)
                except Exception as e:  # a prompt the model refuses: its request alone fails
                    item.future.set_exception(e)
                    continue
                pending[key] = item
                free -= item.params.n
            for key, item in list(pending.items()):
                if item.cancelled.is_set() or stop:  # the client left, or the server is stopping
                    llm.cancel(key)
                    del pending[key]
                    if not item.future.done():
                        item.future.set_exception(ClientGone() if item.cancelled.is_set() else
                                                  ShuttingDown("server is shutting down"))
            if not pending:
                continue
            try:
                done = llm.poll_once() if hasattr(llm, "poll_once") else llm.poll()
            except Exception as e:  # the engine's state is unknown now: fail what it held
                log.exception("the model failed with %d requests in flight", len(pending))
                for key, item in pending.items():
                    llm.cancel(key)
                    item.future.set_exception(e)
                pending.clear()
                continue
            for key, comp in done:
                finished = pending.pop(key, None)
                if finished is not None:
                    finished.future.set_result(comp)
            for key, item in pending.items():
                if item.on_text is not None and (text := llm.partial_text(key)) is not None:
                    item.on_text(text)
        self._fail_queued()

    def _fail_queued(self) -> None:
        """Anything still queued after close() would wait forever: fail it."""
        for waited in self._waiting:
            waited.future.set_exception(ShuttingDown("server is shutting down"))
        self._waiting.clear()
        while True:
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                break
            if left is not None:
                left.future.set_exception(ShuttingDown("server is shutting down"))

    def _run(self, items: list[_Item]) -> None:
        try:
            outs = self._generate(items)
        except Exception:  # one bad row must not fail the others: retry each alone
            if len(items) > 1:
                log.warning("generate failed for a batch of %d; retrying each request alone", len(items))
                for it in items:
                    self._run([it])
                return
            log.exception("generate failed for a request")
            items[0].future.set_exception(sys.exc_info()[1] or RuntimeError("generate failed"))
            return
        log.debug("served a batch of %d", len(items))
        for it, out in zip(items, outs, strict=True):
            it.future.set_result(out)

    def _generate(self, items: list[_Item]) -> list[Completion]:
        outs = self.llm.generate([it.prompt for it in items], items[0].params)
        if len(outs) != len(items):
            raise RuntimeError(f"LLM returned {len(outs)} completions for {len(items)} prompts")
        return outs
