"""One table of SFT / RFT / RL arms evaluated on the same questions (issue #37's acceptance table):
EM ± stderr, F1, the paired EM difference to the first arm (paired stderr, z, gained / lost), and
for each arm's training: updates, rollouts spent and kept, wall time, peak RSS, the reward curve.

    python bench/rl_arms_table.py --arm sft=runs/sft-eval491 --arm rft=runs/eval-rft:runs/rft \\
        --arm grpo-new=runs/eval-grpo-new:runs/grpo-new [--md OUT.md]

``LABEL=EVAL_RUN[:TRAINING]``: EVAL_RUN is a ``reactlab run`` directory; TRAINING (optional) is an
RL output directory (``training.json``) or a ``train rft`` one (``rft.json`` and its rounds). The
first arm is the one the others are paired with; an arm whose run lacks some of its questions is
paired on the questions both scored (n says how many).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reactlab.demo_report import paired  # noqa: E402
from reactlab.hardware import describe_cpu  # noqa: E402
from reactlab.tasks.metrics import mean_stderr  # noqa: E402


def scores(run: Path) -> dict[str, dict[str, float]]:
    """id -> {em, f1} from a run's trajectories (the last record of an id wins, as on resume)."""
    out: dict[str, dict[str, float]] = {}
    for line in (run / "trajectories.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            t = json.loads(line)
            out[t["id"]] = {k: float(t["scores"].get(k, 0.0)) for k in ("em", "f1")}
    return out


def training(path: Path | None) -> dict[str, Any]:
    """What an arm's training spent: updates, episodes sampled and kept (RFT: the correct grounded
    ones it trains on; RL with dynamic sampling: those of the groups it kept; RL without it: those of
    the updates whose one group's rewards differed), wall minutes, peak RSS GB and the reward curve,
    from an RL run's ``training.json`` or an RFT run's rounds (a DPO run: its updates only)."""
    if path is None:
        return {}
    if (path / "rft.json").is_file():
        later = [r for r in json.loads((path / "rft.json").read_text())["rounds"] if r["round"]]
        steps, peak = 0, 0.0
        for r in later:
            res = json.loads((Path(r["adapter"]) / "training.json").read_text())["result"]
            steps += res["steps"]
            peak = max(peak, res["peak_mem_mb"])
        wall = sum(r["wall_s"].get("samples", 0.0) + r["wall_s"].get("train", 0.0) for r in later)
        return {"updates": steps, "rollouts": sum(r.get("episodes", 0) for r in later),
                "kept": sum(r.get("kept", 0) for r in later), "wall_min": wall / 60, "peak_gb": peak / 1024}
    record = json.loads((path / "training.json").read_text())
    res, group = record["result"], record.get("recipe", {}).get("num_generations", 1)
    extra = res.get("extra", {})
    log = extra.get("sampling", {}).get("updates", [])
    rewards = [r["reward"] for r in extra.get("rewards", []) if "reward" in r]
    curve = ""
    if rewards:  # the mean reward over each fifth of training
        k = max(1, math.ceil(len(rewards) / 5))
        curve = " ".join(f"{sum(c) / len(c):.2f}" for c in (rewards[i:i + k] for i in range(0, len(rewards), k)))
    rollouts = kept = None
    if log:
        rollouts, kept = sum(u["rollouts"] for u in log), group * sum(u["kept"] for u in log)
    elif record.get("trainer") in ("grpo", "rloo"):  # no dynamic sampling: every update trains what it drew
        trl = record["recipe"].get("trl", {})
        per_update = trl.get("per_device_train_batch_size", 8) * trl.get("gradient_accumulation_steps", 1)
        rollouts = res["steps"] * per_update
        if per_update == group:  # one group an update: its reward spread says whether it could teach
            kept = group * sum(r.get("reward_std", 0.0) > 0 for r in extra.get("rewards", []))
    return {"updates": res["steps"], "rollouts": rollouts, "kept": kept, "wall_min": res["wall_s"] / 60,
            "peak_gb": res["peak_mem_mb"] / 1024, "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arm", action="append", required=True, help="LABEL=EVAL_RUN[:TRAINING]; the first is the base")
    ap.add_argument("--md", type=Path, help="also write the table here")
    args = ap.parse_args()
    arms = []
    for spec in args.arm:
        label, _, rest = spec.partition("=")
        run, _, train = rest.partition(":")
        if not label or not run:
            sys.exit(f"--arm {spec!r}: expected LABEL=EVAL_RUN[:TRAINING]")
        arms.append((label, Path(run), Path(train) if train else None))
    base = scores(arms[0][1])
    lines = [f"CPU here: {describe_cpu()} (the wall times are the runs' own, measured where they ran)",
             "| arm | n | EM ± stderr | F1 | Δ EM vs " + arms[0][0] + " ± paired stderr (z) | gained / lost "
             "| updates | episodes sampled / kept | train min | peak RSS GB | reward by fifths |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for label, run, train in arms:
        s = scores(run)
        em, se = mean_stderr(v["em"] for v in s.values())
        f1, _ = mean_stderr(v["f1"] for v in s.values())
        d = paired({k: v["em"] for k, v in s.items()}, {k: v["em"] for k, v in base.items()})
        t = training(train)
        delta = "-" if run == arms[0][1] else f"{100 * d['diff']:+.1f} ± {100 * d['stderr']:.1f} ({d['z']:+.2f})"
        gl = "-" if run == arms[0][1] else f"{d['gained']} / {d['lost']}"
        spent = "-" if t.get("rollouts") is None else f"{t['rollouts']} / {'-' if t['kept'] is None else t['kept']}"
        wall, peak = (f"{t['wall_min']:.1f}", f"{t['peak_gb']:.1f}") if t else ("-", "-")
        lines.append(f"| {label} | {len(s)} | {em:.3f} ± {se:.3f} | {f1:.3f} | {delta} | {gl} | {t.get('updates', '-')} "
                     f"| {spent} | {wall} | {peak} | {t.get('curve', '')} |")
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
