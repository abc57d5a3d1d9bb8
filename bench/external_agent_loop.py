"""An agent that is not ours, recorded, trained on and evaluated (issue #40, item 4): one run, one table.

    .venv/bin/python bench/external_agent_loop.py --teacher runs/tools-sft/adapter --out runs/external-loop

The agent is ``examples/openai_tool_agent.py`` (a plain ``openai``-SDK tool loop with its own system
prompt and tool descriptions), always talking to ``reactlab serve`` on 127.0.0.1. Stages, each skipped
when its output exists (so an interrupted run resumes):

1. **before**: the base model served, the agent on the first ``--n`` eval questions;
2. **teacher**: the ``--teacher`` adapter served, the same questions (what the recording's model scores);
3. **record**: the teacher served with ``--record``, the agent on ``--train-n`` train-pool questions,
   its labels (EM per conversation) written beside;
4. **data**: ``reactlab data build --from REC --labels LABELS`` (solved conversations only);
5. **sft**: the base model, LoRA SFT on those rows with the demo's recipe (``max_length`` fits the
   longest row);
6. **after**: the new adapter served, the agent on the eval questions again.

Deliberate deviation from the demo: the data are the agent's own recorded conversations (its system
prompt, its tool schemas), not our oracle's, so the fine-tuned model learns the external agent's format.
Prints EM ± stderr per arm and the paired difference after - before (gained/lost), and writes
``table.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import httpx

from reactlab.demo_report import paired
from reactlab.hardware import cpu_name
from reactlab.tasks.metrics import mean_stderr

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "examples" / "openai_tool_agent.py"
REACTLAB = [sys.executable, "-m", "reactlab.cli"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", type=Path, required=True, help="the adapter served while recording")
    p.add_argument("--out", type=Path, default=Path("runs/external-loop"))
    p.add_argument("--model", default="smollm2")
    p.add_argument("--n", type=int, default=100, help="eval questions (the first n)")
    p.add_argument("--train-n", type=int, default=300, help="train-pool questions recorded (the first n)")
    p.add_argument("--workers", type=int, default=16, help="questions in flight at once")
    p.add_argument("--port", type=int, default=8431)
    p.add_argument("--recipe", default="src/reactlab/recipes/sft_smollm2_lora.yaml")
    p.add_argument("-c", "--config", action="append", default=[
        "trl.save_steps=10", "trl.num_train_epochs=2", "trl.learning_rate=1e-3", "trl.warmup_steps=3"],
        help="recipe overrides (default: the demo's)")
    return p.parse_args(argv)


def served(args, adapter: Path | None, record: Path | None = None):
    """Start ``reactlab serve`` and wait until it answers /v1/models; returns the process."""
    cmd = [*REACTLAB, "serve", args.model, "--port", str(args.port)]
    cmd += ["--adapter", str(adapter)] if adapter else []
    cmd += ["--record", str(record)] if record else []
    log = args.out / f"serve-{int(time.time())}.log"
    with log.open("w") as f:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited ({proc.returncode}); see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{args.port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise SystemExit("error: the server did not answer in 600 s")


def agent(args, name: str, adapter: Path | None, split: str, n: int, record: Path | None = None) -> Path:
    """Run the external agent against a served model; ``answers.jsonl`` of the arm (skipped when done)."""
    out = args.out / name
    answers = out / "answers.jsonl"
    if answers.is_file():
        return answers
    out.mkdir(parents=True, exist_ok=True)
    proc = served(args, adapter, record)
    try:
        t0 = time.time()
        with (out / "agent.log").open("w") as f:
            subprocess.run([sys.executable, str(AGENT), "--base-url", f"http://127.0.0.1:{args.port}/v1",
                            "--split", split, "--n", str(n), "--workers", str(args.workers), "--run", name,
                            "--labels", str(out / "labels.jsonl"), "--answers", str(out / "answers.tmp")],
                           check=True, stdout=f, stderr=subprocess.STDOUT)
        (out / "wall_s").write_text(f"{time.time() - t0:.1f}\n")
        (out / "answers.tmp").rename(answers)
    finally:
        proc.terminate()
        proc.wait(60)
    return answers


def scores(answers: Path) -> dict[str, float]:
    return {r["id"]: float(r["em"]) for r in map(json.loads, answers.read_text().splitlines())}


def main(argv=None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    arms = {"before": agent(args, "before", None, "eval", args.n),
            "teacher": agent(args, "teacher", args.teacher, "eval", args.n)}
    rec = agent(args, "record", args.teacher, "train", args.train_n, record=args.out / "rec")
    data = args.out / "data"
    if not (data / "stats.json").is_file():
        subprocess.run([*REACTLAB, "data", "build", "--from", str(args.out / "rec"), "--labels",
                        str(rec.parent / "labels.jsonl"), "--tokenizer", args.model, "--out", str(data)],
                       check=True)
    stats = json.loads((data / "stats.json").read_text())
    adapter = args.out / "adapter"
    if not (adapter / "training.json").is_file():
        longest = stats.get("tokens", {}).get("max", 1024)
        max_length = 128 * math.ceil((longest + 1) / 128)
        cmd = [*REACTLAB, "train", "sft", "-c", args.recipe, "-c", f"out={adapter}", "-c", f"data.path={data}",
               "-c", f"model.name={args.model}", "-c", f"trl.max_length={max_length}"]
        cmd += [x for c in args.config for x in ("-c", c)]
        cmd += ["--resume"] if adapter.is_dir() else []
        subprocess.run(cmd, check=True)
    arms["after"] = agent(args, "after", adapter, "eval", args.n)

    em = {k: scores(v) for k, v in arms.items()}
    lines = [f"External agent (examples/openai_tool_agent.py) on {args.n} HotpotQA eval questions; "
             f"{cpu_name()}", "", "| arm | served model | EM ± stderr | wall time |", "|---|---|---:|---:|"]
    served_as = {"before": args.model, "teacher": f"{args.model} + {args.teacher}",
                 "after": f"{args.model} + {adapter} (its recording)"}
    for k, v in em.items():
        m, se = mean_stderr(v.values())
        wall = float((arms[k].parent / "wall_s").read_text())
        lines.append(f"| {k} | {served_as[k]} | {m:.3f} ± {se:.3f} | {wall / 60:.1f} min |")
    rec_em, _ = mean_stderr(scores(rec).values())
    lines += ["", f"Recording: {args.train_n} train-pool questions, EM {rec_em:.3f}; rows kept: "
              f"{stats['rows']} (dropped: {stats.get('dropped', {})})."]
    for a, b in (("after", "before"), ("after", "teacher")):
        d = paired(em[a], em[b])
        lines.append(f"- {a} - {b}: {d['diff']:+.3f} (paired stderr {d['stderr']:.3f}, z {d['z']:.1f}; "
                     f"{d['gained']} gained, {d['lost']} lost)")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
