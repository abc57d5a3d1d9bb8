"""How much of logic_mcq a model can learn from the gold letters alone: the ceiling of every
teacher-free row set (the Evaluate role's rows from gold carry the same labels, plus an Answer
agent's reasoning). Writes SFT rows of the zero-shot ``direct`` prompt (the question, the
answer line asked for) -> ``答案是:<gold>`` for every TRAIN question, balanced per option count
as the Evaluate rows are (``data.roles.balanced``), so a model that learns only the letter prior
learns a uniform guess; 5% of the rows (by a hash of the question) held out for the eval loss.

    .venv/bin/python bench/mcq_gold_direct.py --out runs/mcq-direct/data
    reactlab train sft -c sft_gemma3_270m_lora -c data.path=runs/mcq-direct/data -c out=runs/mcq-direct/adapter
    reactlab run --task logic_mcq --agent pipeline --method direct --prompt zeroshot --model gemma3-270m \\
        --adapter runs/mcq-direct/adapter --split eval --out runs/mcq-direct/trained
    .venv/bin/python bench/answer_evaluate_table.py runs/mcq-direct/base runs/mcq-direct/trained

(``runs/mcq-direct/base``: the same run without ``--adapter`` and ``--prompt``.) The table's
"beyond letters" column says whether the trained model reads the questions or picked a habit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path

from reactlab.agents.prompting import load_pipeline_prompt
from reactlab.data.roles import balanced, role_row
from reactlab.tasks import make_task

VAL_SHARE = 0.05


def rows(split: str = "train") -> tuple[list[dict], Counter]:
    """The balanced direct rows of ``split`` and the counts (rows per option count and letter, cut)."""
    prompt = load_pipeline_prompt("logic_mcq_pipeline", shots=False)
    groups: dict[tuple[int, str], list[tuple[str, dict]]] = {}
    for e in make_task("logic_mcq").examples(split):
        user = prompt.messages("direct", e.question)[-1]["content"]
        row = role_row("messages", user, f"答案是:{e.answer}", f"logic_mcq:{split}",
                       f"logic_mcq_pipeline@{prompt.version}:zeroshot/direct", "logic_mcq", "direct")
        groups.setdefault((len(e.meta["options"]), e.answer), []).append((user, row))
    counts: Counter = Counter()
    out = []
    for (n, x), kept in balanced(groups, counts, key=lambda g: g[0]).items():
        counts[f"options={n}/gold={x}"] = len(kept)
        out += [row for _, row in kept]
    return out, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    made, counts = rows()
    parts: dict[str, list[dict]] = {"train": [], "val": []}
    for r in made:
        h = int(hashlib.sha256(r["messages"][0]["content"].encode()).hexdigest()[:8], 16) / 16**8
        parts["val" if h < VAL_SHARE else "train"].append(r)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        (args.out / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part),
                                                encoding="utf-8")
    stats = {"rows": {k: len(v) for k, v in parts.items()}, "counts": dict(sorted(counts.items()))}
    (args.out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
