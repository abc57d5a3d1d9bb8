"""The ``reactlab`` command. Each subcommand is one call into the library; heavy imports happen
inside the command that needs them, so ``reactlab --help`` is instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from reactlab.budget.cli import budget_app
from reactlab.data.cli import data_app
from reactlab.errors import user_errors
from reactlab.export.cli import export_cmd
from reactlab.paths import CACHE_CAP_ENV, DEFAULT_CACHE_CAP_MB, home
from reactlab.train.cli import train_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help=(
    f"ReAct agents: run, build data, train, export. Cache (wiki indexes, converted models): {home()} "
    "($REACTLAB_HOME); see `reactlab cache`."))
wiki_app = typer.Typer(no_args_is_help=True, help="The local Wikipedia (SQLite FTS5).")
cache_app = typer.Typer(no_args_is_help=True, help=(
    f"The cache: {home()} ($REACTLAB_HOME). Wiki indexes past ${CACHE_CAP_ENV} MB "
    f"(default {DEFAULT_CACHE_CAP_MB}) are evicted least recently used first; models stay until cleared."))
app.add_typer(wiki_app, name="wiki")
app.add_typer(cache_app, name="cache")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(budget_app, name="budget")
app.command("export")(export_cmd)

@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="show the traceback of every error, a user's mistake too")] = False,
) -> None:
    """ReAct agents: run, build data, train, export."""
    if debug:
        import os

        from reactlab.errors import DEBUG_ENV

        os.environ[DEBUG_ENV] = "1"


CorpusOpt = Annotated[
    list[Path] | None,
    typer.Option("--corpus", help="page corpus (JSONL[.gz|.bz2]: this pack, HotpotQA abstracts, BEIR); repeatable"),
]


def _index(corpus: list[Path] | None):
    from reactlab.wiki.index import get_index

    with user_errors():  # a malformed corpus names its file and line
        return get_index(corpora=list(corpus) if corpus else None)


@wiki_app.command("build")
def wiki_build(corpus: CorpusOpt = None) -> None:
    """Build (or find in the cache) the search index of a corpus; prints its stats."""
    typer.echo(json.dumps(_index(corpus).stats(), indent=2))


@wiki_app.command("search")
def wiki_search(query: str, corpus: CorpusOpt = None) -> None:
    """Print exactly the observation the agent sees for ``search[QUERY]``."""
    from reactlab.envs.wikienv import search_observation

    typer.echo(printable(search_observation(_index(corpus), query)))


def printable(text: str) -> str:
    r"""``text`` with control characters (terminal escape sequences among them) shown escaped, so
    what a query or a page holds cannot drive the terminal.

    >>> printable("a\x1b[31mb")
    'a\\x1b[31mb'
    """
    return "".join(ch if ch.isprintable() or ch in "\n\t" else ch.encode("unicode_escape").decode() for ch in text)


@wiki_app.command("stats")
def wiki_stats(corpus: CorpusOpt = None) -> None:
    """Pages, sentences, sources and size of the index."""
    typer.echo(json.dumps(_index(corpus).stats(), indent=2))


@cache_app.command("list")
def cache_list() -> None:
    """Each cached wiki index and model: kind, size, when last used, path (least recently used first)."""
    import time

    from reactlab.paths import cache_entries

    entries = cache_entries()
    for e in entries:
        typer.echo(f"{e.kind}\t{e.size / 1e6:,.1f} MB\t{time.strftime('%Y-%m-%d %H:%M', time.localtime(e.used))}\t{e.path}")
    typer.echo(f"{len(entries)} entries, {sum(e.size for e in entries) / 1e6:,.1f} MB in {home()}")


@cache_app.command("clear")
def cache_clear(
    kind: Annotated[str, typer.Argument(help="wiki (search indexes, rebuilt on demand) | models | all")] = "all",
) -> None:
    """Remove cached wiki indexes and/or converted models (both are rebuilt when next needed)."""
    from reactlab.paths import cache_entries, remove_entry

    with user_errors():
        if kind not in ("wiki", "models", "all"):
            raise ValueError(f"cache clear {kind!r}: expected wiki, models or all")
        gone = [e for e in cache_entries() if kind in ("all", e.kind)]
        for e in gone:
            remove_entry(e)
    typer.echo(f"removed {len(gone)} entries, {sum(e.size for e in gone) / 1e6:,.1f} MB from {home()}")


ConfigOpt = Annotated[list[str] | None, typer.Option(
    "--config", "-c", help="a YAML file of options, or KEY=VALUE overriding one (YAML values: limit=5, "
                           "model.adapter=out/sft); repeatable, applied in order after the flags")]


@app.command("run")
def run_cmd(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="run directory (trajectories.jsonl, summary.json)")] = None,
    task: Annotated[str | None, typer.Option(help="benchmark: hotpotqa, or module:Class  [default: hotpotqa]")] = None,
    agent: Annotated[str | None, typer.Option(
        help="react (an LLM agent) | oracle (gold trajectories, no LLM) | pipeline (Answer -> Evaluate, "
             "multiple choice)  [default: react]")] = None,
    method: Annotated[str | None, typer.Option(
        help="react: react | act | cot | standard | cot_sc | react_then_cot_sc | cot_sc_then_react | reflexion (CoT-SC: "
             "-c options.cot_sc.k=21 -c options.cot_sc.temperature=0.7; -c options.reflexion.trials=3); pipeline: "
             "answer_evaluate | answer | direct (-c options.pipeline.samples=5)  [default: the agent's first]")] = None,
    style: Annotated[str | None, typer.Option(
        help="completion (paper, few-shot) | chat (FireAct, zero-shot) | tools (native function calls)  "
             "[default: completion]")] = None,
    prompt: Annotated[str | None, typer.Option(
        help="few-shot prompt (packaged name or YAML file) | zeroshot | devK (method standard: K dev exemplars of "
             "the question's type, MMLU's 5-shot prompt with dev5)  [default: the task's]")] = None,
    model: Annotated[list[str] | None, typer.Option(
        help="smollm2 | gemma3-270m | hf:PATH_OR_ID | DIR | FILE.gguf | openai:MODEL | scripted:FILE; "
             "ROLE=SPEC gives a role its own model (--model answer=openai:deepseek-chat --model "
             "evaluate=smollm2); repeatable")] = None,
    adapter: Annotated[list[str] | None, typer.Option(
        help="a PEFT LoRA adapter dir for a local model; ROLE=DIR for a role's model; repeatable")] = None,
    max_steps: Annotated[int | None, typer.Option(help="steps before the forced finish[]  [default: 7]")] = None,
    split: Annotated[str | None, typer.Option(help="the task's split (hotpotqa: eval | train | paper500 | dev)  "
                                                   "[default: eval]")] = None,
    data: Annotated[Path | None, typer.Option(help="evaluate this file instead of a split (the task's layout)")] = None,
    limit: Annotated[int | None, typer.Option(help="first N examples")] = None,
    seed: Annotated[int | None, typer.Option(help="shuffle with this seed before --limit")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="episodes stepped together (one LLM batch per step)  [default: 32]")] = None,
    workers: Annotated[int | None, typer.Option(help="concurrent requests (openai backend)  [default: 8]")] = None,
    corpus: CorpusOpt = None,
    config: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Run an agent over a task's examples; resumable (rerun with the same --out).

    The options are a ``RunConfig`` (``reactlab.config``): flags, then ``-c`` files and KEY=VALUE."""
    from reactlab.budget.schedule import for_run
    from reactlab.config import RunConfig, load_config, split_specs
    from reactlab.runner import run_from_config

    flags = {"out": out, "task": task, "agent": agent, "method": method, "style": style, "prompt": prompt,
             "max_steps": max_steps, "split": split, "data": data, "limit": limit, "seed": seed,
             "batch_size": batch_size, "workers": workers, "corpus": [str(c) for c in corpus] if corpus else None}
    values: dict[str, Any] = {k: str(v) if isinstance(v, Path) else v for k, v in flags.items() if v is not None}
    files, overrides = split_specs(config or [])
    with user_errors():
        values.update(role_models(model or [], adapter or []))
        cfg = load_config(RunConfig, files, overrides, values=values)
        summary = run_from_config(cfg, progress=not quiet, schedule=for_run(cfg))
    typer.echo(summary.format())
    if summary.all_failed:
        typer.secho(f"error: every episode failed; the first: {summary.first_error}. Fix the cause and rerun the "
                    "same command: failed episodes are run again.", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def role_models(models: list[str], adapters: list[str]) -> dict[str, Any]:
    """``--model`` / ``--adapter`` values as ``RunConfig`` keys: plain ones are the default role's
    (``model``), ``ROLE=...`` ones a role's (``roles``).

    >>> role_models(["smollm2", "evaluate=openai:m"], ["answer=out/a", "out/d"])
    {'model': {'name': 'smollm2', 'adapter': 'out/d'}, 'roles': {'evaluate': {'name': 'openai:m'}, 'answer': {'adapter': 'out/a', 'name': 'smollm2'}}}
    """
    from reactlab.config import split_role

    refs: dict[str, dict[str, str]] = {}
    for flag, key, items in (("--model", "name", models), ("--adapter", "adapter", adapters)):
        for item in items:
            role, value = split_role(item)
            if key in refs.setdefault(role, {}):
                raise ValueError(f"{flag} for {'role ' + role if role else 'the default role'} given twice")
            refs[role][key] = value
    for role, ref in refs.items():  # a role's adapter on the default model: --model M --adapter answer=DIR
        if role and "name" not in ref:
            if "name" not in refs.get("", {}):
                raise ValueError(f"--adapter {role}=... needs a model: --model {role}=SPEC or a plain --model")
            ref["name"] = refs[""]["name"]
    out: dict[str, Any] = {}
    if "" in refs:
        out["model"] = refs.pop("")
    if refs:
        out["roles"] = refs
    return out


@app.command("eval")
def eval_cmd(
    matrix: Annotated[list[str], typer.Argument(
        help="the matrix: YAML file(s) or a packaged one (eval_paper_tasks), then KEY=VALUE overrides "
             "(run.limit=20, run.sc_k=5)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="where the cells and table.md / table.csv go")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Models x tasks x methods: every cell a resumable run directory (OUT/MODEL/TASK/METHOD), then
    one table (OUT/table.md, OUT/table.csv) with the metric, stderr, n, steps, tokens and time."""
    from reactlab.budget.schedule import for_run
    from reactlab.config import find_recipe, split_specs
    from reactlab.evaluate import load_eval_config, run_matrix

    files, overrides = split_specs(matrix)
    files = [str(find_recipe(f)) for f in files]  # a packaged matrix by name: eval_paper_tasks
    with user_errors():
        cfg = load_eval_config(files, overrides, values={"out": str(out)} if out else None)
        cells = run_matrix(cfg, progress=not quiet, log=lambda line: typer.secho(line, err=True, bold=True),
                           schedule=for_run)
    from reactlab.evaluate import table_markdown

    typer.echo(table_markdown(cells) + f"\n{cfg.out}/table.md, {cfg.out}/table.csv")


@app.command("report")
def report_cmd(
    runs: Annotated[list[Path], typer.Argument(help="run directories (each with trajectories.jsonl)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the HTML file to write (a directory: DIR/report.html)")] = Path(
        "report.html"),
    title: Annotated[str | None, typer.Option(help="the page's title")] = None,
    label: Annotated[list[str] | None, typer.Option(
        help="a name for each run, in order (default: the directory names); repeatable")] = None,
) -> None:
    """One self-contained HTML page of runs: summaries side by side, charts, and a trajectory viewer
    (filter, search, open an episode, compare a question across runs). No server, no network."""
    from reactlab.viewer import build_report

    with user_errors():
        path = build_report(runs, out, title=title, labels=label)
    typer.echo(f"{path} ({path.stat().st_size / 1e6:.1f} MB): open it in a browser")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="where the stage dirs and report.md go (default: runs/demo, runs/demo-mcq)")] = None,
    task: Annotated[str, typer.Option(
        help="hotpotqa (ReAct, FireAct data) | logic_mcq (Answer -> Evaluate, both roles trained without a "
             "teacher)")] = "hotpotqa",
    n: Annotated[int | None, typer.Option(
        "--n", help="eval questions per arm, the first N (default: 100 HotpotQA, all 239 logic_mcq)")] = None,
    train_n: Annotated[int, typer.Option(help="logic_mcq: train questions the base Answer agent samples")] = 120,
    k: Annotated[int, typer.Option("--k", help="logic_mcq: Answer samples per train question")] = 4,
    transfer_n: Annotated[int, typer.Option(
        help="logic_mcq: also the base pipeline and the trained arms on this many MMLU eval questions (a seeded "
             "sample, English prompts): whether the roles transfer (0: off)")] = 0,
    train_rows: Annotated[int, typer.Option(help="rows of the SFT dataset (train + val), a seeded sample")] = 300,
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", help="KEY=VALUE overriding the recipe (dotted keys, YAML values: trl.max_steps=20, "
                               "lora.r=8); repeatable")] = None,
    recipe: Annotated[Path | None, typer.Option(
        help="SFT recipe: a YAML file or a packaged recipe name (default: sft_smollm2_lora)")] = None,
    model: Annotated[str | None, typer.Option(
        help="smollm2 | gemma3-270m | hf:PATH_OR_ID, a model this machine fine-tunes (default: smollm2; "
             "logic_mcq: gemma3-270m)")] = None,
    batch_size: Annotated[int, typer.Option(help="episodes stepped together (one LLM batch per step)")] = 32,
    max_steps: Annotated[int, typer.Option(help="agent steps before the forced finish[]")] = 7,
    seed: Annotated[int, typer.Option(help="seed of the SFT row sample")] = 0,
    grpo_minutes: Annotated[float, typer.Option(
        help="also continue the SFT adapter with GRPO (wiki in the loop) for at most this many minutes, "
             "evaluated as a third row (0: off)")] = 0.0,
    grpo_config: Annotated[list[str] | None, typer.Option(
        "--grpo-config", help="KEY=VALUE overriding the GRPO recipe (num_generations=4); repeatable")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """The FireAct loop in miniature: few-shot ReAct baseline, oracle + FireAct data, LoRA SFT, the
    adapter zero-shot on the same questions, report.md; opt-in GRPO from the SFT adapter
    (--grpo-minutes). Resumable: rerun the same command. --task logic_mcq: the Answer -> Evaluate
    loop without a teacher (base pipeline, sampled Answer rows, Evaluate rows from gold, one LoRA
    per role, the trained arms, paired differences)."""
    from reactlab.demo import DEFAULT_RECIPE, run_demo

    if task == "logic_mcq":
        from reactlab.demo_mcq import MCQ_RECIPE, run_mcq_demo

        with user_errors():
            if grpo_minutes or grpo_config:
                raise ValueError("--grpo-minutes / --grpo-config: the logic_mcq demo has no GRPO stage")
            mcq = run_mcq_demo(
                out or Path("runs/demo-mcq"), model=model or "gemma3-270m", n=n, train_n=train_n, k=k,
                overrides=config or [], recipe=recipe or MCQ_RECIPE, batch_size=batch_size, seed=seed,
                transfer_n=transfer_n, progress=not quiet, log=lambda line: typer.secho(line, err=True, bold=True))
        typer.echo(mcq.report)
        return
    with user_errors():
        if task != "hotpotqa":
            raise ValueError(f"--task {task!r}: the demo runs hotpotqa or logic_mcq")
        if transfer_n:
            raise ValueError("--transfer-n: only the logic_mcq demo has transfer arms (--task logic_mcq)")
        result = run_demo(
            out or Path("runs/demo"), model=model or "smollm2", n=100 if n is None else n, train_rows=train_rows, overrides=config or [], recipe=recipe or DEFAULT_RECIPE,
            batch_size=batch_size, max_steps=max_steps, seed=seed, grpo_minutes=grpo_minutes,
            grpo_overrides=grpo_config or [], progress=not quiet,
            log=lambda line: typer.secho(line, err=True, bold=True),
        )
    typer.echo(result.report)


@app.command("serve")
def serve_cmd(
    model: Annotated[str, typer.Argument(help="smollm2 | hf:PATH_OR_ID | openai:MODEL | scripted:FILE")],
    host: Annotated[str, typer.Option(help="bind address (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: any free port)")] = 8000,
    model_name: Annotated[str | None, typer.Option(help="the model id the API reports")] = None,
    adapter: Annotated[Path | None, typer.Option(help="a PEFT LoRA adapter dir for an hf/smollm2 model")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, max=1 << 20, help="the most tokens one request may ask for")] = 4096,
    request_timeout: Annotated[float, typer.Option(min=1, max=86400, help="seconds before a request is cancelled (504)")] = 600,
    alias: Annotated[list[str] | None, typer.Option(
        help="another model name requests may use (others get 404 model_not_found); repeatable")] = None,
    schedule: Annotated[str, typer.Option(
        help="which waiting request goes first when more wait than the batch holds: fcfs | sjf:max_tokens "
             "(the fewest max_tokens) | sjf:PATH (the fewest tokens predicted by a per-call predictor file)")] = "fcfs",
    sjf_max_wait: Annotated[float, typer.Option(
        min=0, help="sjf: a request waiting longer than this many seconds goes before any other")] = 30,
    record: Annotated[Path | None, typer.Option(
        help="append every chat exchange to a JSONL file in this directory (docs/tools.md)")] = None,
) -> None:
    """Serve a model over an OpenAI-compatible API (/v1/completions, /v1/chat/completions),
    merging concurrent requests into batches."""
    from reactlab.serve import main_serve

    with user_errors():
        main_serve(model, host=host, port=port, model_name=model_name,
                   server_options={"max_tokens_cap": max_tokens, "request_timeout_s": request_timeout,
                                   "aliases": tuple(alias or ()), "schedule": _schedule(schedule, sjf_max_wait),
                                   "record": str(record) if record else None},
                   **({"adapter": str(adapter)} if adapter else {}))


def _schedule(spec: str, max_wait_s: float) -> Any:
    """The server's admission ``Schedule`` for ``--schedule``; a predictor's cost is capped by the
    request's own max_tokens (no row decodes more)."""
    from reactlab.serve.batcher import Schedule
    from reactlab.types import prompt_text

    kind, _, arg = spec.partition(":")
    if spec == "fcfs":
        return Schedule()
    if kind != "sjf" or not arg:
        raise ValueError(f"--schedule {spec!r}: use fcfs, sjf:max_tokens or sjf:PATH (a per-call token predictor)")
    if arg == "max_tokens":
        return Schedule(lambda prompt, params: params.max_new_tokens, max_wait_s)
    try:
        from reactlab.budget.calls import load_call_predictor
    except ModuleNotFoundError as e:
        if e.name != "reactlab.budget.calls":
            raise
        raise ValueError(f"--schedule {spec}: this reactlab has no per-call token predictor "
                         "(reactlab.budget.calls); use sjf:max_tokens") from None
    predictor = load_call_predictor(arg)
    return Schedule(lambda prompt, params: min(predictor.predict_tokens(prompt_text(prompt)), params.max_new_tokens),
                    max_wait_s)


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `reactlab ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
