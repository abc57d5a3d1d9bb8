"""``build_dataset``: sources -> selection -> mix -> rows -> cap -> train/val split -> files + stats.

Writes ``train.jsonl``, ``val.jsonl``, ``stats.json`` (counts, histograms, drops by reason, the
options used) and, for ``alpaca`` / ``sharegpt`` / ``sharegpt-tools``, LLaMA-Factory's ``dataset_info.json``; each file
atomically, so a reader sees a whole old or a whole new file.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactlab.data import formats
from reactlab.data.preference import dpo_rows, kto_rows, pairing
from reactlab.data.prompts import prompt_row
from reactlab.data.roles import role_rows
from reactlab.data.select import (
    Selection,
    cap,
    eval_splits,
    excluded_questions,
    is_correct,
    mix,
    normalize_question,
    select,
    split_of,
)
from reactlab.data.sources import Sample, load_source, split_name
from reactlab.io import write_json_atomic, write_jsonl_atomic
from reactlab.progress import progress

FORMATS = (*formats.SFT_FORMATS, "dpo", "kto", "prompts")
PURPOSE = {"dpo": "preference", "kto": "preference", "prompts": "prompts"}
TOKEN_BINS = (128, 256, 512, 768, 1024, 1536, 2048, 4096)


def build_dataset(
    sources: Sequence[str],
    out: str | Path,
    format: str = "messages",
    *,
    exclude: Sequence[str | Path] = (),
    exclude_splits: Sequence[str] | None = None,
    mix_weights: dict[str, float] | None = None,
    max_steps: int | None = None,
    min_f1: float | None = None,
    grounded: bool = False,
    max_rows: int | None = None,
    val_frac: float = 0.05,
    seed: int = 0,
    system: str | None = None,
    tokenizer: Any = "smollm2",
    options: dict[str, Any] | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    """Build one dataset directory from ``sources`` (specs as in ``reactlab.data.sources``) and
    return its stats (also written to ``stats.json``).

    ``format``: one of ``FORMATS``. ``exclude_splits`` / ``exclude``: task splits (``task:split``;
    default: every task's evaluation splits) and files whose questions never become rows. ``mix_weights``: ``{source name: weight}`` (``select.mix``).
    ``max_steps`` / ``min_f1`` / ``grounded``: ``select.Selection``. ``max_rows``: keep a random subset of at most
    this many rows (drawn with ``seed`` after the mix, before the split; the rest count as dropped
    ``max_rows``). ``val_frac``: share of questions in val.
    ``tokenizer``: a spec for ``masking.load_tokenizer``, a loaded tokenizer, or None (no token
    stats). ``options``: layout options (``observation_role`` for sharegpt, ``skip_invalid`` for
    openai, ``continuation`` / ``pairs_per_question`` for dpo, ``solved_only`` for prompts: only
    questions that some trajectory of the sources answered right, whose GRPO/RLOO groups can
    differ in reward; ``mixed_only``: only those answered both right and wrong, a pass rate
    strictly between 0 and 1 measured by earlier samples of the policy). ``system``: the system
    text of chat layouts; the tool formats default to the tools style's
    (``agents.react.TOOLS_SYSTEM``; ``""``: none). ``role``: rows of one agent of
    Answer -> Evaluate runs (``answer`` or ``evaluate``; ``data.roles``: formats messages and alpaca).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    if not sources:
        raise ValueError("no sources (--from)")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if min_f1 is not None and not 0.0 <= min_f1 <= 1.0:
        raise ValueError(f"min_f1 must be in [0, 1], got {min_f1}")
    if grounded and (PURPOSE.get(format) or role):
        raise ValueError(f"grounded selects SFT rows of whole trajectories; not with format {format!r}"
                         + (f" or role {role!r}" if role else ""))
    if not 0.0 <= val_frac < 1.0:
        raise ValueError(f"val_frac must be in [0, 1), got {val_frac}")
    names = [split_name(s)[0] for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"two sources share a name ({names}); name them: --from NAME=PATH")
    if system is None and format in formats.TOOL_FORMATS:  # what `run --style tools` sends, so rows match its runs
        from reactlab.agents.react import TOOLS_SYSTEM

        system = TOOLS_SYSTEM
    out = Path(out)
    options = check_options(format, dict(options or {}))
    loaded = [s for spec in sources for s in load_source(spec)]
    exclude_splits = eval_splits() if exclude_splits is None else list(exclude_splits)
    excluded = excluded_questions(exclude_splits, exclude)
    sel = Selection(purpose=PURPOSE.get(format, "sft"), max_steps=max_steps, min_f1=min_f1, grounded=grounded)
    role_counts: dict[str, int] = {}
    rows: list[tuple[dict[str, Any], Sample | None]]
    if role:  # one agent's turns of Answer -> Evaluate runs (data/roles.py)
        by_role, dropped, role_counts = role_rows(loaded, role, format, excluded)
        rows, kept = list(by_role), [sample for _, sample in by_role]
    else:
        solved_only = format == "prompts" and bool(options.get("solved_only", False))
        mixed_only = format == "prompts" and bool(options.get("mixed_only", False))
        out_of: Counter[str] = Counter()
        if solved_only or mixed_only:  # RL prompts whose group can have a reward spread (the sources measured it)
            right = {normalize_question(x.traj.question) for x in loaded if is_correct(x, min_f1)}
            wrong = {normalize_question(x.traj.question) for x in loaded if not is_correct(x, min_f1)}

            def why_not(x: Sample) -> str | None:
                q = normalize_question(x.traj.question)
                return "unsolved" if q not in right else "all_right" if mixed_only and q not in wrong else None

            reasons = [why_not(x) for x in loaded]
            out_of = Counter(w for w in reasons if w)
            loaded = [x for x, w in zip(loaded, reasons, strict=True) if w is None]
        kept, dropped = select(loaded, sel, excluded)
        dropped.update(out_of)
        kept = mix(kept, mix_weights or {}, seed)
        rows, more = make_rows(kept, format, system, min_f1, seed, options)
        dropped.update(more)
    capped = cap(rows, max_rows, seed)
    if len(capped) < len(rows):
        dropped["max_rows"] += len(rows) - len(capped)
    rows = capped

    splits: dict[str, list[tuple[dict[str, Any], Sample | None]]] = {"train": [], "val": []}
    for row, sample in rows:
        splits[split_of(_question(row, sample), val_frac)].append((row, sample))
    tok = resolve_tokenizer(tokenizer)
    stats = _stats(format, sources, loaded, kept, dropped, splits, tok, tokenizer, excluded, min_f1)
    if role:
        stats["role"] = role
        stats["role_counts"] = role_counts
    stats["options"] = {"exclude": [str(x) for x in exclude], "exclude_splits": list(exclude_splits),
                        "mix": mix_weights or {}, "max_steps": max_steps, "min_f1": min_f1, "grounded": grounded,
                        "max_rows": max_rows, "val_frac": val_frac, "seed": seed, "system": system, **options}
    files = {"train": "train.jsonl", "val": "val.jsonl"}
    for split, name in files.items():
        write_jsonl_atomic(out / name, [r for r, _ in splits[split]])
    if format in ("alpaca", "sharegpt", "sharegpt-tools"):
        nonempty = {k: v for k, v in files.items() if splits[k]}  # an empty file fails to load: not declared
        info = formats.dataset_info(format, out.name, nonempty, system=bool(system))
        write_json_atomic(out / "dataset_info.json", info)
    write_json_atomic(out / "stats.json", stats)
    return stats


LAYOUT_OPTIONS: dict[str, dict[str, tuple[type, Any]]] = {
    "sharegpt": {"observation_role": (str, ("observation", "human"))},
    "openai": {"skip_invalid": (bool, None)},
    "openai-tools": {"skip_invalid": (bool, None)},
    "dpo": {"continuation": (str, ("full", "turn")), "pairs_per_question": (int, (1, 1000))},
    "prompts": {"solved_only": (bool, None), "mixed_only": (bool, None)},
}
"""Each format's ``--option`` keys: type and allowed values (a tuple of choices, or ``(lo, hi)``)."""


def check_options(fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` when every key is an option of ``fmt`` with a value it takes; else a one-line
    ``ValueError`` naming the option and what it takes."""
    known = LAYOUT_OPTIONS.get(fmt, {})
    for key, value in options.items():
        if key not in known:
            names = ", ".join(known) if known else "none"
            raise ValueError(f"--option {key}: not an option of format {fmt!r} (its options: {names})")
        kind, allowed = known[key]
        if kind is int and isinstance(value, int) and not isinstance(value, bool) and allowed is not None:
            if not allowed[0] <= value <= allowed[1]:
                raise ValueError(f"--option {key}={value}: must be in [{allowed[0]}, {allowed[1]}]")
        elif not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            what = "true or false" if kind is bool else f"one of {', '.join(allowed)}" if kind is str else "an integer"
            raise ValueError(f"--option {key}={value!r}: must be {what}")
        elif kind is str and value not in allowed:
            raise ValueError(f"--option {key}={value!r}: must be one of {', '.join(allowed)}")
    return options


def make_rows(samples: list[Sample], fmt: str, system: str | None, min_f1: float | None, seed: int,
              options: dict[str, Any]) -> tuple[list[tuple[dict[str, Any], Sample | None]], Counter]:
    """Rows of one format with the sample each came from (None for a DPO pair) and extra drops."""
    if fmt == "dpo":
        keys = ("continuation", "pairs_per_question")
        rows, dropped = dpo_rows(samples, system, min_f1=min_f1, seed=seed,
                                 **{k: options[k] for k in keys if k in options})
        return [(r, None) for r in rows], dropped
    if fmt == "kto":
        rows, dropped = kto_rows(samples, system, min_f1=min_f1)
        return [(r, None) for r in rows], dropped
    if fmt == "prompts":
        return [(prompt_row(s, system), s) for s in samples], Counter()
    return [(formats.to_row(fmt, s.traj, s.source, system, **options), s) for s in samples], Counter()


def _question(row: dict[str, Any], sample: Sample | None) -> str:
    if sample is not None:
        return sample.traj.question
    prompt = row["prompt"]  # DPO / KTO rows: the question is the prompt's user message
    return next(m["content"] for m in prompt if m["role"] == "user")


def resolve_tokenizer(spec: Any) -> Any:
    if spec is None or spec == "none":
        return None
    if isinstance(spec, str):
        from reactlab.data.masking import load_tokenizer

        return load_tokenizer(spec)
    return spec


def count_tokens(tokenizer: Any, row: dict[str, Any], fmt: str) -> int:
    """Tokens of a row's first view (``formats.row_views``) as the model sees it: the chat template
    for messages, the plain text for the completion layout."""
    view = formats.row_views(row, fmt)[0][1]
    if isinstance(view, str):
        return len(tokenizer(view, add_special_tokens=False)["input_ids"])
    return len(tokenizer.apply_chat_template(view, tokenize=True, return_dict=True,
                                             add_generation_prompt=fmt == "prompts")["input_ids"])


def histogram(values: list[int], bins: Sequence[int] = TOKEN_BINS) -> dict[str, int]:
    """Counts per ``[lo, hi)`` bin, labelled ``"lo-hi"`` (last bin ``">=hi"``), empty bins left out.

    >>> histogram([10, 200, 300, 5000], (128, 256))
    {'0-128': 1, '128-256': 1, '>=256': 2}
    """
    out: Counter = Counter()
    for v in values:
        lo = 0
        for hi in bins:
            if v < hi:
                out[f"{lo}-{hi}"] += 1
                break
            lo = hi
        else:
            out[f">={bins[-1]}"] += 1
    order = [f"{lo}-{hi}" for lo, hi in zip((0, *bins), bins, strict=False)] + [f">={bins[-1]}"]
    return {k: out[k] for k in order if out[k]}


def _stats(fmt, sources, loaded, kept, dropped, splits, tok, tok_spec, excluded, min_f1) -> dict[str, Any]:
    rows = [r for part in splits.values() for r, _ in part]
    samples = [s for part in splits.values() for _, s in part if s is not None]
    stats: dict[str, Any] = {
        "format": fmt,
        "sources": {split_name(s)[0]: s for s in sources},
        "rows": {k: len(v) for k, v in splits.items()},
        "loaded_by_source": dict(Counter(s.source for s in loaded)),
        "kept_by_source": dict(Counter(s.source for s in kept)),
        "rows_by_source": {k: dict(Counter(r.get("source", s.source if s else "?") for r, s in v))
                           for k, v in splits.items()},
        "dropped": dict(sorted(dropped.items())),
        "excluded_questions": len(excluded),
        "questions": len({normalize_question(_question(r, s)) for part in splits.values() for r, s in part}),
        "steps_hist": dict(sorted(Counter(len(s.traj.steps) for s in samples).items())),
        "prompt_ids": dict(Counter(r.get("prompt_id", formats.layout_id(fmt, s.traj) if s else "?")
                                   for part in splits.values() for r, s in part)),
        "source_prompt_ids": dict(Counter(s.traj.prompt_id for s in kept)),
    }
    if fmt in ("dpo", "kto"):
        stats["pairing"] = pairing(kept, min_f1)
    if fmt == "kto":
        stats["labels"] = dict(Counter(str(r["label"]) for r in rows))
    if tok is not None and rows:
        stats["tokens"] = token_stats(tok, tok_spec, rows, fmt)
    return stats


def token_stats(tok: Any, tok_spec: Any, rows: list[dict[str, Any]], fmt: str) -> dict[str, Any]:
    """Token counts of ``rows`` (``count_tokens``): mean, median, p95, max, total and a histogram."""
    counts = [count_tokens(tok, r, fmt) for r in progress(rows, desc="counting tokens", unit="row")]
    return {
        "tokenizer": tok_spec if isinstance(tok_spec, str) else getattr(tok, "name_or_path", "?"),
        "mean": round(statistics.fmean(counts), 1), "median": statistics.median(counts),
        "p95": sorted(counts)[int(0.95 * (len(counts) - 1))], "max": max(counts), "total": sum(counts),
        "hist": histogram(counts),
    }


