"""The task records of an RL dataset's own questions, to run an adapter on what it trained on: did
RL learn its training questions at all, apart from whether it transfers (docs/rl.md)?

    .venv/bin/python bench/rl_train_questions.py runs/data-rl-solved --out runs/rl-solved65.json
    reactlab run --task hotpotqa --model smollm2 --data runs/rl-solved65.json --style chat --prompt zeroshot \\
        --max-steps 7 --adapter runs/grpo-screen --out runs/train65-screen

Reads the ``prompts`` rows (``data build --format prompts``) of ``train.jsonl`` and writes, in their
order, the records of the task's ``--split`` (default: the train pool, where RL rows come from) whose
question is a row's last user turn; a row whose question is not there is an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reactlab.data.select import normalize_question
from reactlab.io import read_records
from reactlab.paths import data_dir
from reactlab.tasks.hotpotqa import SPLIT_FILES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a data build --format prompts directory")
    ap.add_argument("--split", default="train", choices=sorted(SPLIT_FILES))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    records = {normalize_question(r["question"]): r for _, r in read_records(data_dir() / SPLIT_FILES[args.split])}
    out = []
    for where, row in read_records(args.data / "train.jsonl"):
        question = row["prompt"][-1]["content"]
        if normalize_question(question) not in records:
            print(f"{where}: question not in hotpotqa {args.split}: {question[:60]!r}", file=sys.stderr)
            sys.exit(2)
        out.append(records[normalize_question(question)])
    args.out.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    print(f"{len(out)} questions -> {args.out}")


if __name__ == "__main__":
    main()
