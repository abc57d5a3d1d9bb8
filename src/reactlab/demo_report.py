"""The demo's ``report.md``: one row per arm (from each run's ``summary.json``), the EM deltas, the
data and training lines, and the ``reactlab`` commands that reproduce every stage."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from reactlab.config import SFTRecipe
from reactlab.paths import recipes_dir
from reactlab.report import Arm, Summary, arms_table, duration
from reactlab.train.record import TRAINING_FILE

if TYPE_CHECKING:
    from reactlab.demo import Demo

DEFAULT_RECIPE = recipes_dir() / "sft_smollm2_lora.yaml"
GRPO_RECIPE = recipes_dir() / "grpo_smollm2_lora.yaml"

__all__ = ["commands", "render_report", "table_rows"]


def table_rows(demo: Demo) -> list[Arm]:
    """One row per arm, read from its run's ``summary.json`` (never recomputed)."""
    label = {"finetuned": " + LoRA adapter", "grpo-finetuned": " + LoRA adapter (SFT + GRPO)"}
    return [Arm(stage, demo.dir(stage), demo.model + label.get(stage, ""), method, Summary.read(demo.dir(stage)))
            for stage, method in demo.arms]


def render_report(demo: Demo, rows: list[Arm], cfg: SFTRecipe) -> str:
    """``report.md``: the arms table, the EM delta, the data and training lines, the commands."""
    lines = [f"# The FireAct loop in miniature: {demo.model}", "", *arms_table(rows)]
    base, tuned = (r.summary for r in rows[:2])
    lines += ["", f"**ΔEM (fine-tuned − baseline): {100 * (tuned.main - base.main):+.1f} points** "
                  f"({base.main:.3f} → {tuned.main:.3f} on the same {base.n} questions)."]
    if len(rows) > 2:
        rl = rows[2].summary
        lines.append(f"**ΔEM (SFT + GRPO − SFT): {100 * (rl.main - tuned.main):+.1f} points** "
                     f"({tuned.main:.3f} → {rl.main:.3f}).")
    lines.append("")
    stats = json.loads((demo.dir("data") / "stats.json").read_text())
    rows_by: dict[str, int] = {}
    for part in stats["rows_by_source"].values():
        for k, v in part.items():
            rows_by[k] = rows_by.get(k, 0) + v
    tokens = stats.get("tokens", {})
    dropped = stats.get("dropped", {})
    lines.append(f"- **Data** (`data/`): {stats['rows']['train']} train + {stats['rows']['val']} val rows "
                 f"({', '.join(f'{k}: {v}' for k, v in rows_by.items())}); "
                 + (f"{tokens['total']:,} tokens (mean {tokens['mean']}, max {tokens['max']}); " if tokens else "")
                 + f"{dropped.get('eval_overlap', 0):,} trajectories dropped as evaluation questions, "
                 f"{dropped.get('max_rows', 0):,} left out by the row cap.")
    info = json.loads((demo.dir("adapter") / TRAINING_FILE).read_text())
    res = info["result"]
    loss = f"{res['train_loss']:.3f}" if res.get("train_loss") is not None else "n/a"
    eval_loss = f", eval loss {res['eval_loss']:.3f}" if res.get("eval_loss") is not None else ""
    tps = f", {res['tokens_per_s']} tokens/s" if res.get("tokens_per_s") else ""
    lines.append(f"- **Training** (`adapter/`): LoRA r={cfg.lora.r} on {info['device']}, {res['steps']} updates "
                 f"over {res['extra'].get('train_rows', '?')} rows, {duration(res['wall_s'])} "
                 f"({res['train_tokens']:,} tokens{tps}); final train loss {loss}{eval_loss}; "
                 "loss curve: [adapter/loss.png](adapter/loss.png)"
                 + (" (resumed from a checkpoint: the time is the resumed part's)" if res["extra"].get("resumed") else "")
                 + ".")
    if demo.grpo_minutes:
        lines.append(_grpo_line(demo))
    lines.append("- Wall times come from each run's `summary.json` (`wall_s`): a resumed run counts its last "
                 "invocation only.")
    lines += ["", "## Reproduce", "", "```bash", *commands(demo), "```", ""]
    return "\n".join(lines)


def _grpo_line(demo: Demo) -> str:
    info = json.loads((demo.dir("grpo") / TRAINING_FILE).read_text())
    res, recipe = info["result"], info.get("recipe", {})
    rewards = res["extra"].get("rewards", [])
    curve = (f"mean episode reward {rewards[0]['reward']:.3f} (first update) → {rewards[-1]['reward']:.3f} (last)"
             if rewards else "no reward logged")
    stopped = " (stopped by the time budget)" if res["extra"].get("stopped_by_time") else ""
    return (f"- **GRPO** (`grpo/`): from the SFT adapter, {res['steps']} updates of {recipe.get('num_generations')} "
            f"episodes (one question each) in {duration(res['wall_s'])}{stopped}; {curve}; "
            "curves: [grpo/reward.png](grpo/reward.png), [grpo/loss.png](grpo/loss.png).")


def commands(demo: Demo) -> list[str]:
    """The ``reactlab`` commands each stage is, in order, then the one demo command that chains them."""

    def run_cmd(stage: str) -> str:
        cfg = demo.run_config(stage)
        args = ["reactlab", "run"]
        if cfg.model is not None:
            args += ["--model", cfg.model.name] + (["--adapter", cfg.model.adapter] if cfg.model.adapter else [])
        for k, v in cfg.model_dump(exclude_unset=True, exclude={"out", "model"}).items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        return shlex.join([*args, "--out", cfg.out])

    data = demo.data_options()
    build = ["reactlab", "data", "build", *(x for s in data["sources"] for x in ("--from", s)), "--format",
             data["format"], *(["--grounded"] if data["grounded"] else []), "--max-rows", str(data["max_rows"]), "--seed", str(data["seed"]), "--tokenizer",
             data["tokenizer"], "--out", str(data["out"])]
    train = ["reactlab", "train", "sft", "-c", _shown(demo.recipe), *(x for o in demo.recipe_overrides() for x in ("-c", o))]
    one = ["reactlab", "demo", "--out", str(demo.out), "--n", str(demo.n), "--train-rows", str(demo.train_rows),
           "--seed", str(demo.seed), "--batch-size", str(demo.batch_size), "--max-steps", str(demo.max_steps)]
    if demo.model != "smollm2":
        one += ["--model", demo.model]
    if demo.recipe != DEFAULT_RECIPE:
        one += ["--recipe", str(demo.recipe)]
    one += [x for o in demo.overrides for x in ("-c", o)]
    grpo: list[str] = []
    if demo.grpo_minutes:
        one += ["--grpo-minutes", f"{demo.grpo_minutes:g}", *(x for o in demo.grpo_overrides for x in ("--grpo-config", o))]
        grpo = ["# 5. GRPO from the SFT adapter (wiki in the loop), then the same questions",
                shlex.join(["reactlab", "data", "build", "--from", str(demo.dir("oracle-train")), "--format", "prompts",
                            "--seed", str(demo.seed), "--tokenizer", "none", "--out", str(demo.dir("grpo-data"))]),
                shlex.join(["reactlab", "train", "grpo", "-c", _shown(GRPO_RECIPE),
                            *(x for o in demo.grpo_recipe_overrides() for x in ("-c", o))]),
                run_cmd("grpo-finetuned")]
    return [
        "# 1. baseline: few-shot ReAct", run_cmd("baseline"),
        "# 2. oracle trajectories on the train pool, then the SFT data (eval and paper500 questions dropped)",
        run_cmd("oracle-train"), shlex.join(build),
        "# 3. LoRA SFT (add --resume to continue from a checkpoint)", shlex.join(train),
        "# 4. the adapter, zero-shot, chat layout", run_cmd("finetuned"), *grpo,
        "# all of it (each stage skipped when done)", shlex.join(one),
    ]


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is under it (shorter commands)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
