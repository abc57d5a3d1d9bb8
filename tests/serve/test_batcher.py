"""Admission order in ``MicroBatcher``: first come first served by default, shortest predicted
first under ``Schedule(cost)``, the age bound that keeps a long request from starving, and the
cost computed once per prompt. A scripted engine stands in for the model."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from reactlab.llm.scripted import finish
from reactlab.serve.batcher import ClientGone, MicroBatcher, Schedule, ShuttingDown
from reactlab.types import Completion, GenParams, Prompt


def by_max_tokens(prompt: Prompt, params: GenParams) -> float:
    return params.max_new_tokens


class StepLLM:
    """A scripted streaming engine: a prompt decodes ``max_new_tokens`` steps and answers its own
    text; at most ``batch_size`` rows decode together. Records the prompts in the order they were
    submitted (admitted) and when. Each step waits for ``gate`` (set: never waits) and ``step_s``."""

    name = "steps"

    def __init__(self, batch_size: int = 2, step_s: float = 0.0):
        self.batch_size, self.step_s = batch_size, step_s
        self.gate = threading.Event()
        self.admitted: list[str] = []
        self.admitted_at: dict[str, float] = {}
        self.rows: dict[object, list] = {}  # key -> [prompt, params, steps left]
        self.most_rows = 0

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Completion]:
        raise AssertionError("a streaming model is never fed in rounds")

    def submit(self, key: object, prompt: Prompt, params: GenParams) -> None:
        assert isinstance(prompt, str)
        self.admitted.append(prompt)
        self.admitted_at[prompt] = time.monotonic()
        self.rows[key] = [prompt, params, params.max_new_tokens]
        self.most_rows = max(self.most_rows, len(self.rows))

    def poll_once(self) -> list[tuple[object, Completion]]:
        self.gate.wait()
        time.sleep(self.step_s)
        done = []
        for key, row in list(self.rows.items())[: self.batch_size]:
            row[2] -= 1
            if row[2] <= 0:
                del self.rows[key]
                done.append((key, finish(row[0], row[0], row[1])))
        return done

    poll = poll_once

    def cancel(self, key: object) -> None:
        self.rows.pop(key, None)

    def partial_text(self, key: object) -> str | None:
        return None


def queue_behind_blockers(batcher: MicroBatcher, llm: StepLLM, jobs: list[tuple[str, int]]) -> list:
    """Fill the engine's rows with blockers, wait until they are in, queue ``jobs`` (name, max
    tokens) one request each, then let the engine run; every future."""
    futures = [it.future for it in batcher.enqueue([f"blocker{i}" for i in range(llm.batch_size)],
                                                   GenParams(max_new_tokens=3))]
    deadline = time.monotonic() + 5
    while len(llm.admitted) < llm.batch_size and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(llm.admitted) == llm.batch_size
    for name, n in jobs:
        futures += [it.future for it in batcher.enqueue([name], GenParams(max_new_tokens=n))]
    llm.gate.set()
    for f in futures:
        f.result(timeout=10)
    return futures


JOBS = [("a", 9), ("b", 2), ("c", 7), ("d", 2), ("e", 1), ("f", 5)]


def test_sjf_admits_the_cheapest_waiting_request_first_ties_by_arrival():
    llm = StepLLM(batch_size=2)
    batcher = MicroBatcher(llm, schedule=Schedule(by_max_tokens))
    try:
        futures = queue_behind_blockers(batcher, llm, JOBS)
    finally:
        batcher.close()
    assert llm.admitted[2:] == ["e", "b", "d", "f", "c", "a"]
    assert llm.most_rows == 2  # the rest waited in the batcher, never in the engine
    assert [f.result().text for f in futures[2:]] == [name for name, _ in JOBS]


def test_fcfs_is_the_default_and_admits_in_arrival_order():
    llm = StepLLM(batch_size=2)
    batcher = MicroBatcher(llm)
    try:
        queue_behind_blockers(batcher, llm, JOBS)
    finally:
        batcher.close()
    assert llm.admitted[2:] == [name for name, _ in JOBS] and llm.most_rows == 2


def test_the_cost_is_computed_once_per_prompt():
    calls: list[str] = []

    def cost(prompt: Prompt, params: GenParams) -> float:
        calls.append(str(prompt))
        return params.max_new_tokens

    llm = StepLLM(batch_size=1)
    batcher = MicroBatcher(llm, schedule=Schedule(cost))
    try:
        queue_behind_blockers(batcher, llm, JOBS)
    finally:
        batcher.close()
    assert sorted(calls) == sorted(["blocker0", *(name for name, _ in JOBS)])  # each waited many steps


def test_a_failing_cost_fails_its_request_alone():
    def cost(prompt: Prompt, params: GenParams) -> float:
        if prompt == "bad":
            raise ValueError("cannot predict")
        return 1.0

    llm = StepLLM(batch_size=2)
    llm.gate.set()
    batcher = MicroBatcher(llm, schedule=Schedule(cost))
    try:
        bad, good = batcher.enqueue(["bad", "good"], GenParams(max_new_tokens=1))
        with pytest.raises(ValueError, match="cannot predict"):
            bad.future.result(timeout=5)
        assert good.future.result(timeout=5).text == "good" and llm.admitted == ["good"]
    finally:
        batcher.close()


def feed_short_requests(batcher: MicroBatcher, until: threading.Event, names: list[str]) -> None:
    """A steady stream of 1-step requests, more than the engine can serve, until ``until``."""
    while not until.is_set():
        names.append(f"short{len(names)}")
        batcher.enqueue([names[-1]], GenParams(max_new_tokens=1))
        time.sleep(0.005)


@pytest.mark.parametrize("max_wait_s", [0.3, float("inf")])
def test_the_age_bound_admits_a_long_request_despite_a_stream_of_short_ones(max_wait_s):
    llm = StepLLM(batch_size=1, step_s=0.01)
    llm.gate.set()
    batcher = MicroBatcher(llm, schedule=Schedule(by_max_tokens, max_wait_s=max_wait_s))
    stop, names = threading.Event(), []
    feeder = threading.Thread(target=feed_short_requests, args=(batcher, stop, names))
    try:
        feeder.start()
        while len(names) < 20:  # short requests are waiting
            time.sleep(0.005)
        (long,) = batcher.enqueue(["long"], GenParams(max_new_tokens=3))
        t0, queued_before = time.monotonic(), len(names)
        time.sleep(1.5)
        admitted_while_fed = "long" in llm.admitted
        stop.set()
        feeder.join()
        long.future.result(timeout=30)
    finally:
        stop.set()
        batcher.close()
    wait = llm.admitted_at["long"] - t0
    if max_wait_s == 0.3:
        # shorts queued after it went first until it had waited 0.3 s; then it went before them all
        assert admitted_while_fed and 0.3 <= wait < 1.3
        ahead = llm.admitted[: llm.admitted.index("long")]
        assert names[queued_before] in ahead  # a short request queued after it
    else:  # without the bound it waits for the stream to end: starvation
        assert not admitted_while_fed and wait >= 1.5


def test_waiting_requests_are_cancelled_and_failed_at_shutdown():
    llm = StepLLM(batch_size=1)
    batcher = MicroBatcher(llm, schedule=Schedule(by_max_tokens))
    (blocker,) = batcher.enqueue(["blocker"], GenParams(max_new_tokens=2))
    while not llm.admitted:
        time.sleep(0.005)
    gone, waiting = batcher.enqueue(["gone", "waiting"], GenParams(max_new_tokens=1))
    gone.cancelled.set()
    time.sleep(0.05)
    threading.Timer(0.1, llm.gate.set).start()
    batcher.close()
    with pytest.raises(ClientGone):
        gone.future.result(timeout=5)
    with pytest.raises(ShuttingDown):
        waiting.future.result(timeout=5)
    assert "gone" not in llm.admitted and "waiting" not in llm.admitted


class GatedRounds:
    """A non-streaming model: records each ``generate`` call's prompts; the first call waits for
    ``gate``."""

    name = "rounds"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[list[str]] = []

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Completion]:
        self.calls.append([str(p) for p in prompts])
        self.gate.wait()
        return [finish(str(p), p, params) for p in prompts]


@pytest.mark.parametrize(("schedule", "order"), [
    (None, ["a", "b", "c", "d", "e", "f"]),
    (Schedule(by_max_tokens), ["e", "b", "d", "f", "c", "a"]),
])
def test_rounds_take_the_schedules_pick(schedule, order):
    llm = GatedRounds()
    batcher = MicroBatcher(llm, max_batch=2, schedule=schedule)
    try:
        first = batcher.enqueue(["first"], GenParams(max_new_tokens=3))
        while not llm.calls:
            time.sleep(0.005)
        items = [it for name, n in JOBS for it in batcher.enqueue([name], GenParams(max_new_tokens=n))]
        llm.gate.set()
        for it in [*first, *items]:
            it.future.result(timeout=10)
    finally:
        batcher.close()
    assert [p for call in llm.calls[1:] for p in call] == order
    assert all(len(call) == 1 for call in llm.calls)  # distinct max_tokens: never merged
