"""The demo's ``report.md``: one row per arm (from each run's ``summary.json``), the EM deltas, the
data and training lines, and the ``reactlab`` commands that reproduce every stage."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from reactlab.report import Arm, Summary, arms_table, duration
from reactlab.train.recipes import SFTRecipe
from reactlab.train.record import TRAINING_FILE

__all__ = ["render_report", "table_rows"]


def table_rows(out: Path, model: str, arms: Sequence[tuple[str, str]]) -> list[Arm]:
    """One row per arm (``(stage, method)``, the stage's run in ``out/stage``), read from its run's
    ``summary.json`` (never recomputed)."""
    label = {"finetuned": " + LoRA adapter", "grpo-finetuned": " + LoRA adapter (SFT + GRPO)"}
    return [Arm(stage, out / stage, model + label.get(stage, ""), method, Summary.read(out / stage))
            for stage, method in arms]


def render_report(out: Path, model: str, rows: list[Arm], cfg: SFTRecipe, commands: Sequence[str],
                  grpo: bool = False) -> str:
    """``report.md`` of the demo in ``out``: the arms table, the EM delta, the data and training
    lines (``grpo``: and the GRPO stage's), the ``commands`` that reproduce it."""
    lines = [f"# The FireAct loop in miniature: {model}", "", *arms_table(rows)]
    base, tuned = (r.summary for r in rows[:2])
    lines += ["", f"**ΔEM (fine-tuned − baseline): {100 * (tuned.main - base.main):+.1f} points** "
                  f"({base.main:.3f} → {tuned.main:.3f} on the same {base.n} questions)."]
    if len(rows) > 2:
        rl = rows[2].summary
        lines.append(f"**ΔEM (SFT + GRPO − SFT): {100 * (rl.main - tuned.main):+.1f} points** "
                     f"({tuned.main:.3f} → {rl.main:.3f}).")
    lines.append("")
    stats = json.loads((out / "data" / "stats.json").read_text())
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
    info = json.loads((out / "adapter" / TRAINING_FILE).read_text())
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
    if grpo:
        lines.append(_grpo_line(out))
    lines.append("- Wall times come from each run's `summary.json` (`wall_s`): a resumed run counts its last "
                 "invocation only.")
    lines += ["", "## Reproduce", "", "```bash", *commands, "```", ""]
    return "\n".join(lines)


def _grpo_line(out: Path) -> str:
    info = json.loads((out / "grpo" / TRAINING_FILE).read_text())
    res, recipe = info["result"], info.get("recipe", {})
    rewards = res["extra"].get("rewards", [])
    curve = (f"mean episode reward {rewards[0]['reward']:.3f} (first update) → {rewards[-1]['reward']:.3f} (last)"
             if rewards else "no reward logged")
    stopped = " (stopped by the time budget)" if res["extra"].get("stopped_by_time") else ""
    return (f"- **GRPO** (`grpo/`): from the SFT adapter, {res['steps']} updates of {recipe.get('num_generations')} "
            f"episodes (one question each) in {duration(res['wall_s'])}{stopped}; {curve}; "
            "curves: [grpo/reward.png](grpo/reward.png), [grpo/loss.png](grpo/loss.png).")
