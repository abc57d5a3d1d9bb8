"""What the agent tests share: driving one episode by hand."""

from __future__ import annotations

import pytest

from reactlab.types import Completion


def _drive(agent, example, env, reply):
    """Run one episode; ``reply(query)`` answers each query (a ``Completion`` or its text).
    Returns ``(trajectory, queries)``."""
    gen, queries = agent.episode(example, env), []
    try:
        q = next(gen)
        while True:
            queries.append(q)
            r = reply(q)
            q = gen.send(r if isinstance(r, Completion) else Completion(text=r))
    except StopIteration as stop:
        return stop.value, queries


@pytest.fixture
def drive():
    return _drive
