"""Benchmarks: one file each (loader + scoring). A plain dict maps task names to classes."""

from __future__ import annotations

import importlib

from reactlab.types import Task

TASKS: dict[str, str] = {
    "hotpotqa": "reactlab.tasks.hotpotqa:HotpotQA",
}


def make_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
