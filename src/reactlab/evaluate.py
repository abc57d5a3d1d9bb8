"""``reactlab eval``: a matrix of models x tasks x methods in one command, then one table.

Every cell is a normal run directory, ``OUT/<model>/<task>/<method>``, made by
``runner.run_from_config`` (so it resumes, and ``reactlab report`` reads it); a cell whose run is
complete is not run again and keeps the wall time it was measured with. Each model is loaded once
for all its cells and the wiki index is opened once. The table (``OUT/table.md`` and
``OUT/table.csv``) has one row per cell: the task's main metric with its stderr and n, the average
steps, tokens per question and wall time.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactlab.config import EvalConfig, ModelRef, RunConfig, load_config
from reactlab.io import write_text_atomic
from reactlab.report import Summary, duration, metric_label
from reactlab.types import LLM

if TYPE_CHECKING:
    from reactlab.runner import Schedule


@dataclass
class Cell:
    """One run of the matrix and its summary."""

    model: str
    task: str
    method: str
    out: Path
    summary: Summary


def cell_dir(out: Path, model: ModelRef, task: str, method: str) -> Path:
    """``out/<model>/<task>/<method>``, the model's label made a safe directory name.

    >>> cell_dir(Path("m"), ModelRef(name="hf:org/x", adapter="out/sft"), "fever", "cot_sc").as_posix()
    'm/hf_org_x+out_sft/fever/cot_sc'
    """
    return out / re.sub(r"[^\w.+-]+", "_", model.label()).strip("_") / task / method


def cell_configs(cfg: EvalConfig) -> Iterator[tuple[ModelRef, RunConfig]]:
    """Every cell's ``RunConfig``, model by model (validated: a bad key fails before any model loads)."""
    for model in cfg.models:
        for task in cfg.tasks:
            for method in cfg.methods:
                values: dict[str, Any] = {**cfg.run, "out": str(cell_dir(Path(cfg.out), model, task.name, method)),
                                          "task": task.name, "split": task.split, "method": method,
                                          "model": model.model_dump()}
                for key in ("data", "limit", "seed", "max_steps"):
                    if getattr(task, key) is not None:
                        values[key] = getattr(task, key)
                yield model, load_config(RunConfig, [], [], values=values, values_origin="the matrix (run: and tasks:)")


def _complete(cfg: RunConfig) -> Summary | None:
    """The cell's summary when its run is complete (every example, no failed episode), else None."""
    path = Path(cfg.out) / "summary.json"
    if not path.is_file():
        return None
    from reactlab.tasks import make_task

    s = Summary.read(path)
    n = len(make_task(cfg.task).examples(cfg.split, limit=cfg.limit, seed=cfg.seed, data=cfg.data))
    return s if s.n == n and not s.status.get("error") else None


def run_matrix(cfg: EvalConfig, *, llms: dict[str, LLM] | None = None, index: Any = None, progress: bool = True,
               log: Callable[[str], None] | None = None,
               schedule: Callable[[RunConfig], Schedule | None] | None = None) -> list[Cell]:
    """Run every cell not yet complete, write the tables; returns the cells in matrix order.
    ``llms``: loaded models by ``ModelRef.label()`` (else each is loaded once here). ``schedule``:
    makes a cell's ``Schedule`` from its config (``reactlab.budget.schedule.for_run``), for cells
    with ``order_by`` / ``token_budget``."""
    from reactlab.runner import open_llm, run_from_config

    say = log or (lambda _line: None)
    cells = list(cell_configs(cfg))
    loaded: dict[str, LLM] = dict(llms or {})
    out: list[Cell] = []
    with contextlib.ExitStack() as stack:
        if index is None:
            from reactlab.wiki.index import get_index

            index = stack.enter_context(get_index())
        for k, (model, run_cfg) in enumerate(cells, 1):
            label = model.label()
            where = f"[{k}/{len(cells)}] {label} · {run_cfg.task} · {run_cfg.method}"
            summary = _complete(run_cfg)
            if summary is not None:
                say(f"{where}: done ({run_cfg.out})")
            else:
                say(f"{where} -> {run_cfg.out}")
                if label not in loaded:
                    for old in list(loaded):  # one model in memory at a time
                        close = getattr(loaded.pop(old), "close", None)
                        if callable(close):
                            close()
                    loaded[label] = open_llm(model, workers=run_cfg.workers)
                summary = run_from_config(run_cfg, index=index, llms={"default": loaded[label]}, progress=progress,
                                          schedule=schedule(run_cfg) if schedule else None)
            out.append(Cell(label, run_cfg.task, run_cfg.method or summary.run.get("method", ""), Path(run_cfg.out), summary))
    write_text_atomic(Path(cfg.out) / "table.md", table_markdown(out))
    write_text_atomic(Path(cfg.out) / "table.csv", table_csv(out))
    return out


COLUMNS = ("model", "task", "method", "metric", "value", "stderr", "n", "avg_steps", "tokens_per_question", "wall_s")


def _row(c: Cell) -> dict[str, Any]:
    s = c.summary
    return {"model": c.model, "task": c.task, "method": c.method, "metric": s.main_metric, "value": s.main,
            "stderr": s.stderr.get(s.main_metric, 0.0), "n": s.n, "avg_steps": s.avg_steps,
            "tokens_per_question": s.tokens_per_question, "wall_s": s.wall_s}


def table_markdown(cells: Sequence[Cell]) -> str:
    lines = ["| model | task | method | metric | value ± stderr | n | avg steps | tokens/question | wall time |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for c in cells:
        r = _row(c)
        lines.append(f"| {r['model']} | {r['task']} | {r['method']} | {metric_label(r['metric'])} | "
                     f"{r['value']:.3f} ± {r['stderr']:.3f} | {r['n']} | {r['avg_steps']:.2f} | "
                     f"{r['tokens_per_question']:,.0f} | {duration(r['wall_s'])} |")
    return "\n".join(lines) + "\n"


def table_csv(cells: Sequence[Cell]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for c in cells:
        w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in _row(c).items()})
    return buf.getvalue()


def load_eval_config(files: Sequence[str | Path], overrides: Sequence[str] = (),
                     values: dict[str, Any] | None = None) -> EvalConfig:
    """``EvalConfig`` from YAML files, ``KEY=VALUE`` overrides and flag values; every cell checked."""
    cfg = load_config(EvalConfig, files, overrides, values=values)
    list(cell_configs(cfg))  # an unknown run key or bad value fails now, naming it
    return cfg
