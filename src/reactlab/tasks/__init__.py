"""Benchmarks: one file each (loader, scorer, environment, default prompt). A plain dict maps task
names to where their class lives; a task of your own is ``--task your.module:YourTask`` (or an entry
added to ``TASKS``: a ``"module:Class"`` string or the class itself)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Union

from reactlab.types import Task

TASKS: dict[str, Union[str, Callable[[], Task]]] = {
    "hotpotqa": "reactlab.tasks.hotpotqa:HotpotQA",
    "fever": "reactlab.tasks.fever:FEVER",
    "bamboogle": "reactlab.tasks.bamboogle:Bamboogle",
    "strategyqa": "reactlab.tasks.strategyqa:StrategyQA",
    "mmlu": "reactlab.tasks.mmlu:MMLU",
    "logic_mcq": "reactlab.tasks.logic_mcq:LogicMCQ",
}


def _load(target: str) -> Callable[[], Task]:
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"task {target!r} cannot be loaded: {e}") from None


def make_task(name: str) -> Task:
    """The task called ``name`` in ``TASKS``, or the class at ``module:Class``."""
    if name in TASKS:
        entry = TASKS[name]
        return (_load(entry) if isinstance(entry, str) else entry)()
    if ":" in name and name.partition(":")[2]:
        return _load(name)()
    raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))} (or module:Class)")
