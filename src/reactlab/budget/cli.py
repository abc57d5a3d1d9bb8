"""``reactlab budget``: label runs with their cost, train and score predictors, predict.

Mounted by ``reactlab.cli`` as ``app.add_typer(budget_app, name="budget")``. Each command is one
call into the library; heavy imports happen inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reactlab.errors import user_errors

MAX_BUCKETS = 100
"""The most token buckets a predictor may tell apart (each is a class the model must learn)."""

budget_app = typer.Typer(no_args_is_help=True,
                         help="Predict what a question will cost an agent (steps, token range): labels, predictors, scores.")


@budget_app.command("build")
def build_cmd(
    sources: Annotated[list[str], typer.Option(
        "--from", help="run dir | trajectories file | fireact:NAME (steps only) | a `serve --record` dir (call_tokens "
                   "only); NAME=SOURCE names it; repeatable")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory (train/val/test.jsonl, stats.json)")],
    val_frac: Annotated[float, typer.Option(help="share of non-evaluation questions in val.jsonl (by a hash)")] = 0.2,
    buckets: Annotated[str | None, typer.Option(
        help="token bucket edges, comma-separated (e.g. 60,90,130); default: quantiles of the training labels")] = None,
    n_buckets: Annotated[int, typer.Option(min=2, max=MAX_BUCKETS, help="buckets when the edges are quantiles")] = 5,
    exclude: Annotated[list[Path] | None, typer.Option(
        help="also treat this file's questions as evaluation questions (test rows only); repeatable")] = None,
    target: Annotated[list[str] | None, typer.Option(
        "--target", help="steps | tokens (episode rows) | call_tokens (one row per model call, calls/); "
                         "repeatable (default: all)")] = None,
    repeat: Annotated[list[str] | None, typer.Option(
        "--repeat", help="a second run of the same configuration, for the noise ceiling only; repeatable")] = None,
) -> None:
    """Label runs with steps and token buckets (median over a question's runs; a greedy run: its value)
    and per-call token counts; prints the stats, with each label set's noise ceiling."""
    from reactlab.budget.labels import build_budget

    with user_errors():
        edges = None
        if buckets is not None:
            try:
                edges = [int(x) for x in buckets.split(",") if x.strip()]
            except ValueError:
                raise ValueError(f"--buckets {buckets!r}: expected integers separated by commas") from None
            if not 1 <= len(edges) < MAX_BUCKETS or edges != sorted(set(edges)) or edges[0] < 1:
                raise ValueError(f"--buckets {buckets!r}: 1 to {MAX_BUCKETS - 1} increasing positive token counts")
        from reactlab.budget.labels import TARGETS

        stats = build_budget(sources, out, val_frac=val_frac, edges=edges, n_buckets=n_buckets,
                             exclude=[str(p) for p in exclude or []], targets=target or TARGETS, repeat=repeat or [])
    typer.echo(json.dumps(stats, indent=2))


@budget_app.command("train")
def train_cmd(
    method: Annotated[str, typer.Argument(
        help="mean | mode | features | features+env | gbm (fitted) | sft | grpo | rloo | dpo | kto (LLM) | "
             "call_mean | call_mode | call_head | call_step | call_ridge | call_gbm | call_ridge+words | call_gbm+words "
             "(per-call tokens from the prompt text; +words: its opening words too, for a server's mixed requests)")],
    data: Annotated[Path, typer.Option("--data", help="a `budget build` directory")],
    out: Annotated[str | None, typer.Option("--out", "-o", help="where the predictor goes (LLM methods: the recipe's out)")] = None,
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", help="LLM methods: a recipe (default budget_METHOD_smollm2_lora) or KEY=VALUE; repeatable")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in out")] = False,
) -> None:
    """Fit a baseline or fine-tune the LLM predictor; prints what was written."""
    from reactlab.budget.train import train_budget

    with user_errors():
        result = train_budget(method, data, config or [], out=out, resume=resume)
    typer.echo(json.dumps(result, indent=2))


@budget_app.command("eval")
def eval_cmd(
    data: Annotated[Path, typer.Argument(help="a `budget build` directory")],
    predictor: Annotated[list[str] | None, typer.Option(
        "--predictor", "-p", help="mean | mode | features | a predictor.json or its directory; repeatable "
                                  "(default: the three baselines)")] = None,
    split: Annotated[str, typer.Option(help="val | test (evaluation questions) | train")] = "val",
    as_json: Annotated[bool, typer.Option("--json", help="print the scores as JSON instead of a table")] = False,
    target: Annotated[list[str] | None, typer.Option(
        "--target", help="steps | tokens | call_tokens: one table per target, every score with its bootstrap 95% "
                         "interval and the noise ceiling (default -p: every fitted predictor); repeatable")] = None,
    call_predictor: Annotated[list[str] | None, typer.Option(
        "--call-predictor", help="call_tokens: mean | mode | head | step | ridge | gbm | ridge+words | gbm+words | "
                                 "a call_predictor.json or its directory; repeatable (default: the first six)")] = None,
    call_head: Annotated[str | None, typer.Option(
        help="call_tokens: score only calls of this kind (thought | action | cot | answer | chat | other)")] = None,
    call_step: Annotated[int | None, typer.Option(help="call_tokens: score only the calls of this step")] = None,
) -> None:
    """Score predictors on one split: exact / within-1 / within-2, MAE and Kendall tau, steps and buckets."""
    from reactlab.budget.evaluate import DEFAULT_PREDICTORS, evaluate
    from reactlab.budget.labels import load_budget, run_agreement
    from reactlab.budget.metrics import table

    if target:
        _eval_targets(data, target, predictor, call_predictor, split, as_json, call_head, call_step)
        return
    with user_errors():
        results = evaluate(data, predictor or list(DEFAULT_PREDICTORS), split=split)
        budget = load_budget(data)
        agreement = run_agreement(budget.rows[split], budget.edges)
    if as_json:
        typer.echo(json.dumps({"predictors": results, "run_agreement": agreement}, indent=2))
        return
    typer.echo(table(results))
    if agreement:
        parts = [f"{t} exact {agreement[t]['exact']:.3f} within1 {agreement[t]['within1']:.3f}"
                 for t in ("steps", "bucket") if t in agreement]
        typer.echo(f"the agent against itself ({agreement['questions']} questions with 2+ runs; one run vs the "
                   f"others' median): {'; '.join(parts)}")
    unparsed = {k: v["unparsed"] for k, v in results.items() if v["unparsed"]}
    if unparsed:
        typer.echo(f"answers with no number (the fallback was used): {unparsed}")


def _eval_targets(data: Path, targets: list[str], predictors: list[str] | None, call_predictors: list[str] | None,
                  split: str, as_json: bool, call_head: str | None = None, call_step: int | None = None) -> None:
    from reactlab.budget.evaluate import CALL_PREDICTORS, evaluate_targets
    from reactlab.budget.metrics import target_table
    from reactlab.budget.predictors import FITTED

    with user_errors():
        results = evaluate_targets(data, targets, predictors or list(FITTED), call_predictors or list(CALL_PREDICTORS),
                                   split=split, call_head=call_head, call_step=call_step)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for t, r in results.items():
        edges = f"; buckets split at {', '.join(map(str, r['edges']))} tokens" if t != "steps" else ""
        edges += f"; calls of head {call_head} only" if t == "call_tokens" and call_head else ""
        edges += f"; calls of step {call_step} only" if t == "call_tokens" and call_step is not None else ""
        typer.echo(f"\n{t} ({r['questions']} held-out questions of split {split}{edges}; 95% bootstrap intervals)\n")
        typer.echo(target_table(r["predictors"], r["ceiling"]))


@budget_app.command("predict")
def predict_cmd(
    predictor: Annotated[str, typer.Option("--predictor", "-p", help="a predictor.json or its directory")],
    question: Annotated[str | None, typer.Argument(help="the question (or give --file)")] = None,
    file: Annotated[Path | None, typer.Option(help="a text file of questions, one a line")] = None,
    task: Annotated[str, typer.Option(help="the task the question is from")] = "hotpotqa",
    method: Annotated[str, typer.Option(help="the agent's method")] = "react",
    model: Annotated[str, typer.Option(help="the model label, as in the runs the labels came from")] = "",
    qtype: Annotated[str, typer.Option("--type", help="question type where known (bridge, comparison)")] = "",
) -> None:
    """Print predicted steps and token range of a question (or each line of a file)."""
    from reactlab.budget.labels import Question, bucket_range
    from reactlab.budget.predictors import load_predictor

    with user_errors():
        if (question is None) == (file is None):
            raise ValueError("give a QUESTION or --file FILE (one of them)")
        if question is not None:
            texts = [question]
        else:
            assert file is not None
            from reactlab.io import reading

            with reading(file):
                texts = [x.strip() for x in file.read_text(encoding="utf-8").splitlines() if x.strip()]
        p = load_predictor(predictor)
        qs = [Question(t, task=task, method=method, model=model, type=qtype) for t in texts]
        preds = p.predict(qs)
    for q, pr in zip(qs, preds, strict=True):
        tokens = bucket_range(pr.bucket, p.edges) if p.edges else f"bucket {pr.bucket}"
        typer.echo(f"steps {pr.steps}\ttokens {tokens}\t{q.question}")

