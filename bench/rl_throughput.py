"""Where a GRPO (or RLOO: ``--trainer rloo``) update's time goes, and episodes/minute and updates/hour before and after the cuts,
side by side in one run (the same questions, policy, seeds and TRL config in every arm).

    .venv/bin/python bench/rl_throughput.py [--model smollm2] [--questions 2] [--group 2] \
        [--max-steps 2] [--new 16] [--generations 1] [--trainer grpo|rloo]

The run is ``train grpo``'s own (``online.run_rl``: our ReAct episodes against WikiEnv over the
vendored index, LoRA on ``--model``), on HotpotQA train-pool questions with their supporting pages as
the ``evidence`` column, rewards as the GPU recipe weighs them. Each generation round samples
``questions x group`` episodes (decoded together in our engine) and is trained on for two updates
(``num_iterations: 2``, micro-batches of ``group`` episodes): the setting where TRL recomputes the
round's log-probabilities before its first update. Arms:

- ``trl``: TRL's own path: that recomputation (one no-grad forward over the round), fp32 (RLOO
  recomputes after every round, whatever ``num_iterations``);
- ``engine``: the engine's log-probabilities stand in for it (``grpo.EpisodeGRPOTrainer``,
  ``rloo.EpisodeRLOOTrainer``), fp32;
- ``engine+bf16``: the same under bf16 autocast (``trl.bf16``), only where ``reactlab.hardware``
  says bf16 matmuls are fast.

Per arm: wall time of ``trainer.train``, split into rollouts (decoding; the env's ``step`` calls
apart), log-probability recomputation, and the rest (the loss's forward, backward and optimizer
steps); then episodes/minute and updates/hour. The CPU is printed first: name it with the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from reactlab.hardware import bf16_matmuls_fast, describe_cpu

REWARDS = {"exact_match_reward": 1.0, "f1_reward": 0.5, "evidence_recall_reward": 0.3,
           "answer_in_observation_reward": 0.2, "format_reward": 0.1, "step_cost_reward": 1.0}


def prompt_rows(n: int) -> list[dict[str, Any]]:
    """``n`` HotpotQA train-pool questions as ``data build --format prompts`` rows, with ``evidence``."""
    from reactlab.tasks.hotpotqa import HotpotQA

    rows = []
    for ex in HotpotQA().examples("train", limit=n):
        titles = list(dict.fromkeys(t for t, _ in ex.meta.get("supporting_facts", [])))
        rows.append({"prompt": [{"role": "user", "content": ex.question}], "answer": ex.answer, "evidence": titles,
                     "source": "hotpotqa:train", "prompt_id": "chat@1/react"})
    return rows


def run_arm(name: str, args: argparse.Namespace, rows: list[dict[str, Any]], index: Any, work: Path) -> dict[str, float]:
    import torch

    from reactlab.envs.wikienv import WikiEnv
    from reactlab.train.grpo import episode_grpo_trainer, grpo_config
    from reactlab.train.online import EpisodeRollouts, run_rl
    from reactlab.train.recipes import GRPORecipe, RLOORecipe
    from reactlab.train.rloo import episode_rloo_trainer, rloo_config

    rloo = args.trainer == "rloo"

    times: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    data = work / "data"
    data.mkdir(exist_ok=True)
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = (RLOORecipe if rloo else GRPORecipe).model_validate(dict(
        model={"name": args.model}, data={"path": str(data)}, out=str(work / name),
        lora={"r": 16, "alpha": 32, "dropout": 0.0}, rewards=REWARDS, num_generations=args.group,
        max_episode_steps=args.max_steps, max_new_tokens=args.new, temperature=1.0,
        trl={"max_steps": 2 * args.generations, "num_iterations": 2,
             "per_device_train_batch_size": args.group, "gradient_accumulation_steps": args.questions,
             "learning_rate": 1e-5, "beta": 0.0, "logging_steps": 1, "save_strategy": "no",
             "report_to": [], "seed": 0, "disable_tqdm": True, "bf16": name.endswith("bf16")}))

    class TimedEnv(WikiEnv):
        def step(self, action: Any) -> tuple[str, bool]:
            t0 = time.perf_counter()
            try:
                return super().step(action)
            finally:
                times["env"] += time.perf_counter() - t0

    def make(*, rollouts: EpisodeRollouts, **kw: Any) -> Any:
        if rloo:
            trainer = episode_rloo_trainer(rollouts=rollouts, engine_logprobs=name != "trl", **kw)
        else:
            trainer = episode_grpo_trainer(rollouts=rollouts, engine_logprobs=name != "trl", **kw)
        call, logps, train = rollouts.__call__, trainer._get_per_token_logps_and_entropies, trainer.train

        def timed_rollouts(prompts: list[Any], tr: Any) -> dict[str, list[Any]]:
            t0 = time.perf_counter()
            out = call(prompts, tr)
            times["rollouts"] += time.perf_counter() - t0
            counts["episodes"] += len(prompts)
            return out

        def timed_logps(*a: Any, **k: Any) -> Any:
            if torch.is_grad_enabled():
                return logps(*a, **k)
            t0 = time.perf_counter()
            try:
                return logps(*a, **k)
            finally:
                times["recompute"] += time.perf_counter() - t0

        def timed_train(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return train(*a, **k)
            finally:
                times["train"] += time.perf_counter() - t0

        if rloo:
            trainer.rollouts = timed_rollouts
        else:
            trainer.rollout_func = timed_rollouts
        trainer._get_per_token_logps_and_entropies = timed_logps
        trainer.train = timed_train
        return trainer

    config = rloo_config(cfg) if rloo else grpo_config(cfg)
    result = run_rl(cfg, args.trainer, make, config, False, time.perf_counter(), data / "train.jsonl", rows,
                    lambda: TimedEnv(index), None)
    updates = len(result.extra["rewards"])
    wall = times["train"]
    rest = wall - times["rollouts"] - times["recompute"]
    return {"wall": wall, "decode": times["rollouts"] - times["env"], "env": times["env"],
            "recompute": times["recompute"], "loss": rest, "episodes": counts["episodes"], "updates": updates,
            "episodes_per_min": counts["episodes"] / wall * 60, "updates_per_hour": updates / wall * 3600}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--questions", type=int, default=2, help="questions per generation round")
    ap.add_argument("--group", type=int, default=2, help="episodes per question (num_generations)")
    ap.add_argument("--max-steps", type=int, default=2, help="model turns per episode")
    ap.add_argument("--new", type=int, default=16, help="max new tokens per model turn")
    ap.add_argument("--generations", type=int, default=1, help="generation rounds per arm (2 updates each)")
    ap.add_argument("--trainer", choices=("grpo", "rloo"), default="grpo")
    args = ap.parse_args()

    import torch

    from reactlab.wiki.index import get_index

    arms = ["trl", "engine"] + (["engine+bf16"] if bf16_matmuls_fast() else [])
    print(f"CPU: {describe_cpu()}; torch threads {torch.get_num_threads()}; model {args.model}; {args.trainer}; "
          f"{args.questions} questions x {args.group} episodes per round, <= {args.max_steps} turns of <= {args.new} "
          f"tokens; {args.generations} rounds x 2 updates per arm; arms {', '.join(arms)}")
    rows = prompt_rows(args.questions)
    res = {}
    cols = ("wall", "decode", "env", "recompute", "loss")
    print(f"{'arm':12s} " + " ".join(f"{c + ' s':>11s}" for c in cols) + f" {'episodes/min':>13s} {'updates/hour':>13s}",
          flush=True)
    with get_index() as index, tempfile.TemporaryDirectory() as tmp:
        for name in arms:
            r = res[name] = run_arm(name, args, rows, index, Path(tmp))
            print(f"{name:12s} " + " ".join(f"{r[c]:11.1f}" for c in cols)
                  + f" {r['episodes_per_min']:13.1f} {r['updates_per_hour']:13.1f}", flush=True)
    base = res["trl"]["updates_per_hour"]
    for name in arms[1:]:
        print(f"{name} / trl: {res[name]['updates_per_hour'] / base:.2f}x updates/hour")


if __name__ == "__main__":
    main()
