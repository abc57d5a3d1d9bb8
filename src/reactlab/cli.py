"""The ``reactlab`` command. Each subcommand is one call into the library; heavy imports happen
inside the command that needs them, so ``reactlab --help`` is instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reactlab.data.cli import data_app
from reactlab.export.cli import export_cmd
from reactlab.train.cli import train_app

if TYPE_CHECKING:
    from reactlab.wiki.index import WikiIndex

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ReAct agents: run, build data, train, export.")
wiki_app = typer.Typer(no_args_is_help=True, help="The local Wikipedia (SQLite FTS5).")
app.add_typer(wiki_app, name="wiki")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.command("export")(export_cmd)

CorpusOpt = Annotated[
    list[Path] | None,
    typer.Option("--corpus", help="page corpus (JSONL[.gz|.bz2]: this pack, HotpotQA abstracts, BEIR); repeatable"),
]


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _index(corpus: list[Path] | None):
    from reactlab.wiki.index import get_index

    try:
        return get_index(corpora=list(corpus) if corpus else None)
    except (ValueError, FileNotFoundError) as e:  # a malformed corpus names its file and line
        _fail(str(e))


@wiki_app.command("build")
def wiki_build(corpus: CorpusOpt = None) -> None:
    """Build (or find in the cache) the search index of a corpus; prints its stats."""
    typer.echo(json.dumps(_index(corpus).stats(), indent=2))


@wiki_app.command("search")
def wiki_search(query: str, corpus: CorpusOpt = None) -> None:
    """Print exactly the observation the agent sees for ``search[QUERY]``."""
    from reactlab.envs.wikienv import search_observation

    typer.echo(search_observation(_index(corpus), query))


@wiki_app.command("stats")
def wiki_stats(corpus: CorpusOpt = None) -> None:
    """Pages, sentences, sources and size of the index."""
    typer.echo(json.dumps(_index(corpus).stats(), indent=2))


@app.command("run")
def run_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="run directory (trajectories.jsonl, summary.json)")],
    task: Annotated[str, typer.Option(help="benchmark")] = "hotpotqa",
    agent: Annotated[str, typer.Option(help="react (an LLM agent) | oracle (gold trajectories, no LLM)")] = "react",
    method: Annotated[str, typer.Option(help="react | act | cot (prompt variants of the react agent)")] = "react",
    style: Annotated[str, typer.Option(help="completion (paper, few-shot) | chat (FireAct, zero-shot)")] = "completion",
    prompt: Annotated[str, typer.Option(help="few-shot prompt (packaged name or YAML file) | zeroshot")] = "hotpotqa_react",
    model: Annotated[str | None, typer.Option(help="smollm2 | hf:PATH_OR_ID | openai:MODEL | scripted:FILE")] = None,
    adapter: Annotated[Path | None, typer.Option(help="a PEFT LoRA adapter dir for an hf/smollm2 model")] = None,
    max_steps: Annotated[int, typer.Option(help="steps before the forced finish[]")] = 7,
    split: Annotated[str, typer.Option(help="eval | train | paper500 | dev")] = "eval",
    data: Annotated[Path | None, typer.Option(help="evaluate this file instead of a split (official/HF layout)")] = None,
    limit: Annotated[int | None, typer.Option(help="first N examples")] = None,
    seed: Annotated[int | None, typer.Option(help="shuffle with this seed before --limit")] = None,
    batch_size: Annotated[int, typer.Option(help="episodes stepped together (one LLM batch per step)")] = 32,
    workers: Annotated[int, typer.Option(help="concurrent requests (openai backend)")] = 8,
    corpus: CorpusOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Run an agent over a task's examples; resumable (rerun with the same --out)."""
    from reactlab.io import DataError

    try:
        summary = run_agent(
            out, task=task, agent=agent, method=method, style=style, prompt=prompt, model=model, adapter=adapter,
            max_steps=max_steps, split=split, data=data, limit=limit, seed=seed, batch_size=batch_size,
            workers=workers, corpus=corpus, progress=not quiet,
        )
    except (DataError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(format_summary(summary))


def run_agent(
    out: Path,
    *,
    task: str = "hotpotqa",
    agent: str = "react",
    method: str = "react",
    style: str = "completion",
    prompt: str = "hotpotqa_react",
    model: str | None = None,
    adapter: Path | None = None,
    max_steps: int = 7,
    split: str = "eval",
    data: Path | None = None,
    limit: int | None = None,
    seed: int | None = None,
    batch_size: int = 32,
    workers: int = 8,
    corpus: list[Path] | None = None,
    index: WikiIndex | None = None,
    progress: bool = True,
) -> dict:
    """Exactly what ``reactlab run`` does, as a call (the options are the command's): load the
    examples, build the agent and its LLM, open the index, ``runner.run`` into ``out``; return the
    summary. ``reactlab.demo`` runs its stages through it, so a demo stage *is* that command.

    ``index``: an open ``WikiIndex`` to use instead of opening ``corpus``'s (``data``'s context pages
    are then not added). Raises ``ValueError`` / ``DataError`` / ``FileNotFoundError`` with the
    message the command prints.
    """
    from reactlab.agents import make_agent
    from reactlab.envs.wikienv import WikiEnv
    from reactlab.runner import RunSpec, run
    from reactlab.tasks import make_task

    t = make_task(task)
    examples = t.examples(split, limit=limit, seed=seed, data=data)
    if agent == "oracle":
        a = make_agent("oracle")
    else:
        if model is None:
            raise ValueError(f"--agent {agent} needs --model (smollm2, hf:PATH, openai:MODEL or scripted:FILE)")
        a = make_agent(agent, method=method, style=style, prompt=prompt, max_steps=max_steps, model=model)
    llm = None
    if model is not None and agent != "oracle":
        from reactlab.llm import make_llm

        options: dict = {"adapter": str(adapter)} if adapter else {}
        if model.startswith("openai:"):
            options["concurrency"] = workers
        llm = make_llm(model, **options)
    if index is None:
        # a data file's own context pages join the wiki (they are Wikipedia pages; existing text wins)
        from reactlab.wiki.corpus import pages_from_contexts
        from reactlab.wiki.index import get_index

        extra = pages_from_contexts(examples) if data is not None else ()
        index = get_index(corpora=list(corpus) if corpus else None, extra_pages=extra)
    spec = RunSpec(
        task=task, split=str(data) if data else split, agent=a.name,
        model=model or getattr(a, "model", "none"), prompt_id=a.prompt_id,
    )
    return run(examples, a, t, lambda: WikiEnv(index), out, spec, llm=llm, batch_size=batch_size, progress=progress)


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="where the five stage dirs and report.md go")] = Path("runs/demo"),
    n: Annotated[int, typer.Option("--n", help="HotpotQA eval questions per arm (the first N)")] = 100,
    train_rows: Annotated[int, typer.Option(help="rows of the SFT dataset (train + val), a seeded sample")] = 200,
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", help="KEY=VALUE overriding the recipe (dotted keys, YAML values: trl.max_steps=20, "
                               "lora.r=8); repeatable")] = None,
    recipe: Annotated[Path | None, typer.Option(help="SFT recipe (default: configs/sft_smollm2_lora.yaml)")] = None,
    model: Annotated[str, typer.Option(help="smollm2 | hf:PATH_OR_ID (a model this machine fine-tunes)")] = "smollm2",
    batch_size: Annotated[int, typer.Option(help="episodes stepped together (one LLM batch per step)")] = 32,
    max_steps: Annotated[int, typer.Option(help="agent steps before the forced finish[]")] = 7,
    seed: Annotated[int, typer.Option(help="seed of the SFT row sample")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """The FireAct loop in miniature: few-shot ReAct baseline, oracle + FireAct data, LoRA SFT, the
    adapter zero-shot on the same questions, report.md. Resumable: rerun the same command."""
    from reactlab.demo import DEFAULT_RECIPE, run_demo
    from reactlab.io import DataError

    try:
        result = run_demo(
            out, model=model, n=n, train_rows=train_rows, overrides=config or [], recipe=recipe or DEFAULT_RECIPE,
            batch_size=batch_size, max_steps=max_steps, seed=seed, progress=not quiet,
            log=lambda line: typer.secho(line, err=True, bold=True),
        )
    except (DataError, ValueError, FileNotFoundError) as e:  # ConfigError is a ValueError
        _fail(str(e))
    typer.echo(result.report)


@app.command("serve")
def serve_cmd(
    model: Annotated[str, typer.Argument(help="smollm2 | hf:PATH_OR_ID | openai:MODEL | scripted:FILE")],
    host: Annotated[str, typer.Option(help="bind address (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    model_name: Annotated[str | None, typer.Option(help="the model id the API reports")] = None,
    adapter: Annotated[Path | None, typer.Option(help="a PEFT LoRA adapter dir for an hf/smollm2 model")] = None,
) -> None:
    """Serve a model over an OpenAI-compatible API (/v1/completions, /v1/chat/completions),
    merging concurrent requests into batches."""
    from reactlab.serve import main_serve

    main_serve(model, host=host, port=port, model_name=model_name, **({"adapter": str(adapter)} if adapter else {}))


def format_summary(s: dict) -> str:
    """A small human table of a summary.json."""
    lines = [
        f"n={s['n']}  EM={s.get('em', float('nan')):.3f} ± {s['stderr'].get('em', 0):.3f}  "
        f"F1={s.get('f1', float('nan')):.3f} ± {s['stderr'].get('f1', 0):.3f}  avg_steps={s['avg_steps']:.2f}  "
        f"invalid={s['invalid_action_rate']:.3f}  wall={s['wall_s']:.1f}s",
        "by type: " + ", ".join(f"{k}: EM {v.get('em', 0):.3f} (n={v['n']})" for k, v in s["by_type"].items()),
        "status: " + ", ".join(f"{k}={v}" for k, v in s["status"].items()),
    ]
    return "\n".join(lines)


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `reactlab ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
