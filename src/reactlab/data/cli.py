"""``reactlab data``: build training sets from trajectories and look at them.

Mounted by ``reactlab.cli`` as ``app.add_typer(data_app, name="data")``. Each command is one call
into the library; heavy imports happen inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from reactlab.errors import user_errors

data_app = typer.Typer(no_args_is_help=True, help="Training data from trajectories (SFT, DPO, KTO, GRPO prompts).")


@data_app.command("build")
def build_cmd(
    sources: Annotated[list[str], typer.Option(
        "--from", help="run dir | trajectories/FireAct JSON(L) file | fireact:hotpotqa | hotpotqa:SPLIT | "
                       "a `serve --record` dir; NAME=SOURCE names it; repeatable")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory (train.jsonl, val.jsonl, stats.json)")],
    format: Annotated[str, typer.Option(
        help="messages | completion | alpaca | sharegpt | openai | dpo | kto | prompts; native tool calls: "
             "messages-tools | sharegpt-tools | openai-tools (docs/tools.md)")] = "messages",
    exclude: Annotated[list[Path] | None, typer.Option(
        help="drop questions of this HotpotQA (any layout) or trajectory file; repeatable")] = None,
    exclude_split: Annotated[list[str] | None, typer.Option(
        help="TASK:SPLIT (or SPLIT) whose questions are dropped (default: every task's evaluation splits, "
             "e.g. hotpotqa:eval, hotpotqa:paper500); repeatable")] = None,
    mix: Annotated[list[str] | None, typer.Option(
        help="SOURCE=WEIGHT: keep round(WEIGHT * n) of a source's rows (>1 repeats); repeatable")] = None,
    max_steps: Annotated[int | None, typer.Option(help="drop trajectories with more steps")] = None,
    min_f1: Annotated[float | None, typer.Option(help="also keep answers with F1 >= this (default: EM = 1 only)")] = None,
    grounded: Annotated[bool, typer.Option(
        help="keep only trajectories whose searches and answer appear in the question or an earlier observation "
             "(SFT formats)")] = False,
    max_rows: Annotated[int | None, typer.Option(
        help="keep a random N of the rows (drawn with --seed after --mix, before the train/val split)")] = None,
    val_frac: Annotated[float, typer.Option(help="share of questions in val.jsonl (by a hash of the question)")] = 0.05,
    seed: Annotated[int, typer.Option(help="seed of --mix and --max-rows sampling and DPO pair choice")] = 0,
    system: Annotated[str | None, typer.Option(help="system prompt of chat layouts (as `run --style chat` sends)")] = None,
    tokenizer: Annotated[str, typer.Option(help="tokenizer for token stats: smollm2 | hf:PATH | DIR | none")] = "smollm2",
    role: Annotated[str | None, typer.Option(
        help="rows of one agent of Answer -> Evaluate runs: answer | evaluate | evaluate_gold (formats messages, alpaca)")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", help="layout option KEY=VALUE: observation_role=human (sharegpt), skip_invalid=true "
                         "(openai, openai-tools), continuation=turn, pairs_per_question=N (dpo), solved_only=true "
                         "| mixed_only=true (prompts), min_reward=X (recordings, default 1); repeatable")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="recordings: JSONL of {conversation_id, reward|label}; keeps reward >= min_reward or label true")] = None,
) -> None:
    """Build a dataset from runs and FireAct data; prints its stats."""
    from reactlab.config import parse_options
    from reactlab.data.build import build_dataset
    from reactlab.data.select import parse_mix

    with user_errors():
        from reactlab.data.recorded import build_recorded, is_recording

        if any(is_recording(s) for s in sources) or labels is not None:
            opts = parse_options(option or [], "--option")
            if not all(is_recording(s) for s in sources) or format != "messages" or set(opts) - {"min_reward"}:
                raise ValueError("a `serve --record` dir builds `messages` rows alone (--from recordings only, "
                                 "--labels, --option min_reward=X, --exclude, --exclude-split, --val-frac)")
            min_reward = opts.get("min_reward", 1.0)
            if isinstance(min_reward, bool) or not isinstance(min_reward, (int, float)):
                raise ValueError(f"--option min_reward={min_reward}: expected a number")
            stats = build_recorded(sources, out, labels, float(min_reward), exclude or [],
                                   exclude_split or None, val_frac, tokenizer)
            typer.echo(json.dumps({k: stats[k] for k in ("rows", "conversations", "dropped", "tool_calls", "tokens")
                                   if k in stats}, indent=2))
            return
        stats = build_dataset(
            sources, out, format, exclude=exclude or [], exclude_splits=exclude_split or None,
            mix_weights=parse_mix(mix or []), max_steps=max_steps, min_f1=min_f1, grounded=grounded,
            max_rows=max_rows, val_frac=val_frac,
            seed=seed, system=system, tokenizer=tokenizer, options=parse_options(option or [], "--option"), role=role,
        )
    typer.echo(json.dumps({k: stats[k] for k in ("format", "rows", "rows_by_source", "dropped", "steps_hist",
                                                 "role_counts", "pairing", "labels") if k in stats}
                          | ({"tokens": stats["tokens"]} if "tokens" in stats else {}), indent=2))


@data_app.command("show")
def show_cmd(
    path: Annotated[Path, typer.Argument(help="a dataset directory (or one of its .jsonl files)")],
    n: Annotated[int, typer.Option("--n", min=1, help="rows to show")] = 3,
    split: Annotated[str, typer.Option(help="train | val")] = "train",
    tokenizer: Annotated[str, typer.Option(help="chat template to render with: smollm2 | hf:PATH | DIR | none")] = "smollm2",
    raw: Annotated[bool, typer.Option("--raw", help="print the JSON rows instead")] = False,
) -> None:
    """Print rows as the model will see them (chat layouts rendered with the chat template)."""
    from reactlab.data.formats import row_views
    from reactlab.io import read_records

    file = path if path.is_file() else path / f"{split}.jsonl"
    stats_file = file.parent / "stats.json"
    with user_errors():
        records, wheres = [], []
        for where, rec in read_records(file):
            records.append(rec)
            wheres.append(where)
            if len(records) >= n:
                break
        fmt = json.loads(stats_file.read_text())["format"] if stats_file.exists() else guess_format(records)
        tok = None
        if not raw and tokenizer != "none":
            from reactlab.data.masking import load_tokenizer

            tok = load_tokenizer(tokenizer)
        for i, rec in enumerate(records):
            meta = ", ".join(f"{k}={rec[k]}" for k in ("source", "prompt_id") if k in rec)
            typer.secho(f"=== {file.name} row {i} ({fmt}{'; ' + meta if meta else ''})", bold=True)
            if raw:
                typer.echo(json.dumps(rec, ensure_ascii=False, indent=2))
                continue
            try:
                views = row_views(rec, fmt)
                texts = [(label, render(view, tok, add_generation_prompt=fmt == "prompts")) for label, view in views]
            except (KeyError, TypeError, AttributeError) as e:  # a column missing or of the wrong kind
                raise ValueError(f"{wheres[i]}: not a {fmt} row ({type(e).__name__}: {e})") from None
            except Exception as e:  # noqa: BLE001 - the chat template's own (jinja2) errors
                if type(e).__module__.split(".")[0] != "jinja2":
                    raise
                raise ValueError(f"{wheres[i]}: the chat template cannot render this row ({e})") from None
            for label, text in texts:
                if label:
                    typer.secho(f"--- {label}", bold=True)
                typer.echo(text)


def render(view: Any, tok: Any, add_generation_prompt: bool = False) -> str:
    """A text as is; messages through the tokenizer's chat template, or as ``[role]`` blocks without one."""
    if isinstance(view, str):
        return view
    if tok is not None:
        return tok.apply_chat_template(view, tokenize=False, add_generation_prompt=add_generation_prompt)
    return "\n".join(f"[{m['role']}]\n{m['content']}" for m in view)


def guess_format(records: list[dict[str, Any]]) -> str:
    """The format of rows without a ``stats.json``, from the first row's columns.

    >>> guess_format([{"prompt": [], "chosen": [], "rejected": []}])
    'dpo'
    """
    keys = set(records[0]) if records else set()
    if "tools" in keys:  # tool rows: ShareGPT's, OpenAI's (tools as a list) or TRL's (a JSON string)
        if "conversations" in keys:
            return "sharegpt-tools"
        return "openai-tools" if isinstance(records[0]["tools"], list) else "messages-tools"
    for fmt, cols in (("dpo", {"chosen", "rejected"}), ("kto", {"label", "completion"}),
                      ("completion", {"prompt", "completion"}), ("prompts", {"prompt", "answer"}),
                      ("alpaca", {"instruction", "output"}), ("sharegpt", {"conversations"}),
                      ("messages", {"messages"})):
        if cols <= keys:
            return fmt
    raise ValueError(f"cannot tell the format of rows with columns {sorted(keys)}")
