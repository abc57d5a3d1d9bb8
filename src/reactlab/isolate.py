"""Run a function in a child process, so that a native crash there (llama.cpp above all) is an error
here, not our death: ``run_isolated(fn, ...)`` runs ``fn`` in a fresh ``spawn`` interpreter; a
signal raises ``ChildCrashed`` naming it, an exception ``ChildFailed`` with the child's traceback.
``fn`` must be a module-level function, its arguments and result picklable.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")


class ChildCrashed(RuntimeError):
    """The child process ended without an answer: killed by a signal, ``os._exit``, or timed out."""

    def __init__(self, message: str, exitcode: int | None):
        super().__init__(message)
        self.exitcode = exitcode


class ChildFailed(RuntimeError):
    """The function raised in the child; the message ends with the child's traceback."""


def describe_exit(code: int | None) -> str:
    """How a child process ended, in words.

    >>> describe_exit(-11), describe_exit(-6), describe_exit(3)
    ('killed by signal SIGSEGV', 'killed by signal SIGABRT', 'exited with status 3')
    """
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _child(conn: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        result = fn(*args, **kwargs)
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as text
        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    else:
        conn.send(("ok", result))
    conn.close()


def run_isolated(fn: Callable[..., R], *args: Any, timeout: float | None = None, **kwargs: Any) -> R:
    """``fn(*args, **kwargs)`` in a spawned child process; its result.

    Raises ``ChildCrashed`` when the child dies without answering (the message names the function
    and the signal, e.g. ``killed by signal SIGSEGV``) or runs past ``timeout`` seconds (it is then
    killed), and ``ChildFailed`` when ``fn`` raised.
    """
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args, kwargs), daemon=True)
    proc.start()
    send.close()  # the child holds the only write end: its death closes the pipe
    name = getattr(fn, "__qualname__", repr(fn))
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            if recv.poll(wait):
                try:
                    kind, payload = recv.recv()
                except EOFError:
                    break  # the pipe closed with nothing in it: the child died
                proc.join()
                if kind == "ok":
                    return payload
                raise ChildFailed(f"{name} failed in its child process: {payload}")
            if deadline is not None and time.monotonic() >= deadline:
                proc.kill()
                proc.join()
                raise ChildCrashed(f"{name} ran past {timeout:g} s in its child process; killed it", proc.exitcode)
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join()
    raise ChildCrashed(f"{name} died in its child process: {describe_exit(proc.exitcode)}", proc.exitcode)
