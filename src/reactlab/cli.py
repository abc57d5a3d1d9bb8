"""The ``reactlab`` command. Each subcommand is one call into the library; heavy imports happen
inside the command that needs them, so ``reactlab --help`` is instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from reactlab.data.cli import data_app
from reactlab.export.cli import export_cmd
from reactlab.train.cli import train_app

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


def _index(corpus: list[Path] | None, extra_pages=()):
    from reactlab.wiki.index import get_index

    try:
        return get_index(corpora=list(corpus) if corpus else None, extra_pages=extra_pages)
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
    from reactlab.agents import make_agent
    from reactlab.envs.wikienv import WikiEnv
    from reactlab.io import DataError
    from reactlab.runner import RunSpec, run
    from reactlab.tasks import make_task

    try:
        t = make_task(task)
        examples = t.examples(split, limit=limit, seed=seed, data=data)
        if agent == "oracle":
            a = make_agent("oracle")
        else:
            if model is None:
                _fail(f"--agent {agent} needs --model (smollm2, hf:PATH, openai:MODEL or scripted:FILE)")
            a = make_agent(agent, method=method, style=style, prompt=prompt, max_steps=max_steps, model=model)
        llm = None
        if model is not None and agent != "oracle":
            from reactlab.llm import make_llm

            options: dict = {"adapter": str(adapter)} if adapter else {}
            if model.startswith("openai:"):
                options["concurrency"] = workers
            llm = make_llm(model, **options)
        # a data file's own context pages join the wiki (they are Wikipedia pages; existing text wins)
        from reactlab.wiki.corpus import pages_from_contexts

        index = _index(corpus, extra_pages=pages_from_contexts(examples) if data is not None else ())
        spec = RunSpec(
            task=task, split=str(data) if data else split, agent=a.name,
            model=model or getattr(a, "model", "none"), prompt_id=a.prompt_id,
        )
        summary = run(examples, a, t, lambda: WikiEnv(index), out, spec, llm=llm,
                      batch_size=batch_size, progress=not quiet)
    except (DataError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(format_summary(summary))


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
