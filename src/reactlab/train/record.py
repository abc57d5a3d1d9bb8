"""What a run leaves besides its weights: ``finish_run`` (final eval, save, curves, record),
``training.json`` (``write_training_record`` / ``read_training_record``: data hashes, recipe,
versions, results) and the model card ``README.md``."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reactlab.io import files_sha256, write_text_atomic


@dataclass
class RunResult:
    """What a training run returns (and writes to ``training.json``). Losses are None when not measured
    (no eval set: no ``eval_loss``). ``tokens_per_s``: real (non-pad) training tokens per second of
    ``trainer.train``; ``peak_mem_mb``: CUDA peak allocation on GPU, else the process' peak RSS."""

    out: str
    train_loss: float | None = None
    eval_loss: float | None = None
    steps: int = 0
    train_tokens: int = 0
    tokens_per_s: float | None = None
    wall_s: float = 0.0
    peak_mem_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


TRAINING_FILE = "training.json"
"""A training run's record in its output dir (schema ``reactlab.training/1``); a run of an agent
has ``run.json`` (``reactlab.runner.RunSpec``), a different record."""
TRAINING_SCHEMA = "reactlab.training/1"


def git_commit() -> str | None:
    """The source checkout's commit (``+dirty`` when it has local changes), or None outside git."""
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA's peak allocation when a GPU is in use, else peak RSS."""
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
            return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def prompt_ids(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many rows carry each ``prompt_id`` (rows without one count as ``?``)."""
    out: dict[str, int] = {}
    for r in rows:
        k = str(r.get("prompt_id", "?"))
        out[k] = out.get(k, 0) + 1
    return out


def write_training_record(out: str | Path, *, base_model: str, method: str, recipe: dict[str, Any],
                   data_files: Sequence[str | Path], prompt_id_counts: dict[str, int], result: RunResult,
                   trainer: str = "sft") -> dict[str, Any]:
    """Write ``OUT/training.json``: the base model, the sha256 of the data files, the prompt ids seen in
    the data, the full recipe, the git commit, and the result (losses, tokens/s, peak memory, wall
    time). Returns the dict written."""
    import torch
    import transformers

    from reactlab.io import write_json_atomic

    info = {
        "schema": TRAINING_SCHEMA,
        "trainer": trainer,
        "base_model": base_model,
        "method": method,
        "data": {"files": [str(p) for p in data_files], "sha256": files_sha256(data_files)},
        "prompt_ids": prompt_id_counts,
        "recipe": recipe,
        "git_commit": git_commit(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     **_versions("trl", "peft")},
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "result": asdict(result),
    }
    write_json_atomic(Path(out) / TRAINING_FILE, info)
    write_text_atomic(Path(out) / "README.md", model_card(info))
    return info


def model_card(info: dict[str, Any]) -> str:
    """The ``README.md`` of a trained adapter or model, from its training record: Hugging Face
    model-card metadata naming the base model (its hub id where known, so the Hub links the two),
    then what it was trained on and how, its losses, and how to run and export it. It replaces the
    card PEFT and TRL write, which name the local directory the base was loaded from, or nothing."""
    from reactlab.models import parse_model

    base = str(info["base_model"])
    try:
        hub = parse_model(base).hub_id()
    except ValueError:
        hub = None
    result = info.get("result", {})
    adapter = info.get("method") in ("lora", "qlora")
    trainer = str(info.get("trainer", "sft"))
    meta = ["---", f"base_model: {hub or base}", f"library_name: {'peft' if adapter else 'transformers'}",
            "pipeline_tag: text-generation", "tags:", "- reactlab", "- trl", f"- {trainer}", "- react-agent"]
    if adapter:
        meta += ["- lora", f"- base_model:adapter:{hub or base}"]
    meta.append("---")
    loss = ", ".join(f"{k} {result[k]:.4f}" for k in ("train_loss", "eval_loss") if result.get(k) is not None)
    data = info.get("data", {})
    out = result.get("out", "OUT")
    lines = [
        *meta, "",
        f"# {Path(str(result.get('out', 'model'))).name}", "",
        f"A ReAct agent: `{base}`" + (f" (`{hub}`)" if hub and hub != base else "")
        + f" fine-tuned with `reactlab train {trainer}` ({info.get('method')}) on ReAct trajectories.", "",
        f"- base model: `{hub or base}`" + (f", loaded from `{base}`" if hub and hub != base else ""),
        f"- data: {', '.join(f'`{f}`' for f in data.get('files', []))} (sha256 `{str(data.get('sha256', ''))[:16]}…`)",
        f"- prompt ids in the data: {', '.join(f'`{k}` ({v})' for k, v in info.get('prompt_ids', {}).items())}",
        f"- {result.get('steps', 0)} optimizer steps, {result.get('train_tokens', 0):,} tokens"
        + (f", {loss}" if loss else "") + f", {result.get('wall_s', 0)} s on {info.get('device', '?')}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in info.get('versions', {}).items())}; "
        f"reactlab commit `{info.get('git_commit') or 'unknown'}`",
        "", "The full recipe and results are in `training.json`.", "", "## Use", "", "```",
        (f"reactlab run --model {base} --adapter {out}" if adapter else f"reactlab run --model hf:{out}")
        + " --style chat --prompt zeroshot",
        (f"reactlab export --model {base} --adapter {out}" if adapter else f"reactlab export --model {out}")
        + " --gguf q8_0 --ollama NAME",
        "```", "",
    ]
    return "\n".join(lines)


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            pass
    return out


def read_training_record(out: str | Path) -> dict[str, Any]:
    """``OUT/training.json`` as a dict."""
    return json.loads((Path(out) / TRAINING_FILE).read_text())


def finish_run(trainer: Any, output: Any, cfg: Any, *, name: str, t0: float, files: Sequence[Path],
               rows: Sequence[dict[str, Any]], n_train: int, n_val: int, resume: bool,
               extra: dict[str, Any] | None = None) -> RunResult:
    """After ``output = trainer.train()``: a final eval (when there is an eval set and the last step
    was not evaluated already, e.g. at the end of an epoch), the adapter or
    model + tokenizer saved to ``cfg.out`` (without TRL's frozen ``ref`` adapter), ``loss.png`` and
    ``training.json`` (``trainer: name``). Returns the ``RunResult`` written.

    Under ``torchrun`` / ``accelerate launch`` every process evaluates and saves (both are collective:
    the Trainer writes from the main process only) and the main process alone writes the plot and the
    record; the others return the same result without writing."""
    import time

    from reactlab.train.plots import plot_losses

    last_eval = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if trainer.eval_dataset is None:
        metrics = {}
    elif last_eval is not None and last_eval.get("step") == trainer.state.global_step:
        metrics = {k: v for k, v in last_eval.items() if k.startswith("eval_")}  # evaluated at this step already
    else:
        metrics = trainer.evaluate()
    limit = next((c for c in trainer.callback_handler.callbacks if hasattr(c, "stopped_at_step")), None)
    if limit is not None:
        extra = {**(extra or {}), "max_minutes": cfg.max_minutes, "stopped_by_time": limit.hit}
    model = trainer.model
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")  # TRL's frozen copy of the starting adapter: not part of the result
    out = Path(cfg.out)
    trainer.save_model(str(out))
    history = trainer.state.log_history
    # TRL's count of non-pad tokens trained on; GRPO / RLOO count theirs (prompt + completion) in the state
    tokens = int(getattr(trainer, "_total_train_tokens", 0) or trainer.state.num_input_tokens_seen or 0)
    runtime = output.metrics.get("train_runtime") or 0.0
    losses = [h["loss"] for h in history if "loss" in h]
    result = RunResult(
        out=str(out),
        train_loss=float(losses[-1]) if losses else None,
        eval_loss=metrics.get("eval_loss"),
        steps=trainer.state.global_step,
        train_tokens=tokens,
        tokens_per_s=round(tokens / runtime, 1) if runtime and tokens else None,
        wall_s=round(time.perf_counter() - t0, 1),
        peak_mem_mb=round(peak_memory_mb(), 1),
        extra={"mean_train_loss": output.training_loss, "train_runtime_s": runtime,
               "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
               "activation_checkpointing": bool(getattr(trainer.args, "activation_checkpointing", False)),
               "train_rows": n_train, "val_rows": n_val, "resumed": resume,
               "eval_metrics": metrics, **(extra or {}),
               "log_history": [{k: h[k] for k in ("step", "loss", "eval_loss") if k in h} for h in history
                               if "loss" in h or "eval_loss" in h]},
    )
    if trainer.is_world_process_zero():
        plot_losses(history, out / "loss.png", title=f"{name.upper()} {cfg.method} · {Path(cfg.model.name).name}")
        write_training_record(out, base_model=cfg.model.name, method=cfg.method, recipe=cfg.model_dump(mode="json"),
                              data_files=files, prompt_id_counts=prompt_ids(rows), result=result, trainer=name)
    return result
