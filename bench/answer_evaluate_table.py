"""One table of Answer -> Evaluate runs (``reactlab run --agent pipeline`` / ``reactlab eval`` cells):
accuracy with its standard error, the Answer agent alone, the Evaluate agent's flips, the chance
level and the always-the-most-common-gold-letter baseline and the fallback-extraction rate (wall time: the run's
own log, since a resumed run's summary counts its last invocation only).

    .venv/bin/python bench/answer_evaluate_table.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def cell(s: dict, key: str) -> str:
    """A metric of a summary with its standard error, or ``-`` when the run has none."""
    return f"{s[key]:.3f} ± {s['stderr'][key]:.3f}" if key in s else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    print("| run | method | n | accuracy | Answer alone | right->wrong | wrong->right | chance | most common letter "
          "| fallback |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in args.runs:
        s = json.loads((run / "summary.json").read_text())
        rows = [json.loads(x) for x in (run / "trajectories.jsonl").read_text().splitlines()]
        letter, count = Counter(r["gold"] for r in rows).most_common(1)[0]
        method = s["run"].get("method", "")

        print(f"| {run} | {method} | {s['n']} | {cell(s, 'accuracy')} | {cell(s, 'candidate_accuracy')} | "
              f"{cell(s, 'right_to_wrong')} | {cell(s, 'wrong_to_right')} | {s.get('chance', float('nan')):.3f} | "
              f"{count / len(rows):.3f} ({letter}) | {s.get('fallback', 0):.3f} |")


if __name__ == "__main__":
    main()
